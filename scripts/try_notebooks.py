"""Open examples/gpt2np_tour.ipynb in real notebook front ends, headless, and check the viewer shows.

    python scripts/try_notebooks.py --jupyter /path/to/venv/bin/jupyter [--ui lab notebook nbclassic]

`--jupyter` is a `jupyter` command from an environment with jupyterlab, notebook (and nbclassic,
for the old interface) installed; the kernel is this Python (with ipykernel) importing this
checkout. The script starts `jupyter lab` on 127.0.0.1 in a temporary directory (its config,
data and runtime files there too), and for each front end drives Chromium (Playwright) to run
every cell, then, inside the view's iframe: waits for the page, checks the heatmap is at the
head the notebook asked for, clicks a token and reads its top-5 keys; it reports the frame's
origin, the console errors and every request to another host than the Jupyter server, and saves
a screenshot in test-artifacts/notebook-<ui>.png. Not part of the test suite (it needs Jupyter's
front ends); docs/export.md reports what it found.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("GPT2NP_CHROMIUM", "/usr/bin/chromium")
URLS = {"lab": "/lab/tree/tour.ipynb?reset", "notebook": "/notebooks/tour.ipynb",
        "nbclassic": "/nbclassic/notebooks/tour.ipynb"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(jupyter, root):
    kernel = root / "jupyter-path" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (gpt2np)", "language": "python", "env": {"PYTHONPATH": str(REPO)}}))
    env = dict(os.environ, JUPYTER_PATH=str(root / "jupyter-path"), JUPYTER_CONFIG_DIR=str(root / "config"),
               JUPYTER_DATA_DIR=str(root / "data"), JUPYTER_RUNTIME_DIR=str(root / "runtime"))
    port, token = free_port(), "gpt2np"
    proc = subprocess.Popen([jupyter, "lab", "--no-browser", "--allow-root", f"--port={port}",
                             "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
                             f"--ServerApp.root_dir={root}"], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(root / "server.log", "w"))
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            return proc, base, token
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"jupyter lab did not answer; see {root / 'server.log'}")


def try_ui(browser, ui, base, token, root):
    shutil.copy(REPO / "examples" / "gpt2np_tour.ipynb", root / "tour.ipynb")
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(180_000)
    errors, foreign = [], []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("request", lambda r: not r.url.startswith((base, "data:", "blob:", "about:")) and foreign.append(r.url))
    sep = "&" if "?" in URLS[ui] else "?"
    page.goto(f"{base}{URLS[ui]}{sep}token={token}")
    if ui == "nbclassic":
        page.wait_for_function("() => window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel"
                               " && Jupyter.notebook.kernel.is_connected()")
        page.evaluate("() => Jupyter.notebook.execute_all_cells()")
    else:
        page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached")
        time.sleep(3)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).first.click()
    element = page.locator("iframe[srcdoc]").first
    element.wait_for(state="attached")
    element.scroll_into_view_if_needed()
    frame = element.element_handle().content_frame()
    frame.wait_for_selector("body[data-ready='1']")
    frame.wait_for_function("() => document.getElementById('heatmap').dataset.head === '3'")
    frame.locator("[data-testid=token-5]").click()
    frame.wait_for_selector("#topk[data-query='5'] li[data-key]")
    keys = frame.locator("#topk li[data-key]").evaluate_all("els => els.map(e => e.dataset.key)")
    page.wait_for_function("() => document.body.innerText.includes('trophy.html:')")   # the last cell ran
    out = REPO / "test-artifacts" / f"notebook-{ui}.png"
    out.parent.mkdir(exist_ok=True)
    element.scroll_into_view_if_needed()
    page.screenshot(path=str(out))
    print(f"{ui}: view ready, heatmap at 2.3, top-5 keys of query 5 {keys}; frame origin "
          f"{frame.evaluate('origin')!r}, sandbox {element.get_attribute('sandbox')!r}; requests to other "
          f"hosts {foreign}; console errors {errors}; screenshot {out}")
    page.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jupyter", required=True, help="the jupyter command of an environment with the front ends")
    p.add_argument("--ui", nargs="+", default=list(URLS), choices=list(URLS))
    args = p.parse_args()
    from playwright.sync_api import sync_playwright
    root = Path(tempfile.mkdtemp(prefix="gpt2np-notebooks-"))
    proc, base, token = start(args.jupyter, root)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
            for ui in args.ui:
                try_ui(browser, ui, base, token, root)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
