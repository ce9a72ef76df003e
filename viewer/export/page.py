"""From a trace to the page: templates/index.html rendered with the bundle, viewer.css and the
snapshot inline, behind a Content-Security-Policy; and the notebook's iframe."""

import base64
import hashlib
import html
import json

import jinja2

from ..answers.describe import model_summary
from ..answers.runs import Run, run_handle
from .bundle import STATIC, TEMPLATES, bundle
from .choose import DEFAULT_MAX_MB, MB, ExportError, choose
from .snapshot import build_snapshot

NOTEBOOK_MAX_MB = 2.5        # a notebook view: outputs are saved in the .ipynb and kept in the page
IFRAME_HEIGHT = 900          # pixels; the page scrolls inside the frame
# The iframe's sandbox: scripts run, PNG/SVG exports download; no same-origin access to the
# notebook (an opaque origin), no popups, no forms, no top navigation.
SANDBOX = "allow-scripts allow-downloads"


def csp_hash(text):
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def content_security_policy(script, css):
    """Only the page's own inline script and style run; images from data: and blob: (the PNG
    export); every fetch, frame, font, form and base URL refused."""
    return (f"default-src 'none'; script-src {csp_hash(script)}; style-src {csp_hash(css)}; "
            "img-src data: blob:; base-uri 'none'; form-action 'none'")


def script_json(data):
    """JSON safe inside <script type="application/json">: no '<', '>' or '&' as such, so no
    '</script>' or '<!--' whatever the tokens hold; ASCII only."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def no_url_for(*args, **kwargs):
    raise ExportError("templates/index.html asks for a server URL in a saved page: every url_for "
                      "must sit in the {% if not saved %} branches.")


def page_parts():
    """(script, css, icon data URL) of the page, checked to be safe to inline."""
    script = bundle()
    css = (STATIC / "viewer.css").read_text(encoding="utf-8")
    for text, tag in ((script, "script"), (css, "style")):
        if f"</{tag}" in text.lower():
            raise ExportError(f"The page's {tag} contains '</{tag}', which would end it early when inlined.")
    icon = "data:image/svg+xml;base64," + base64.b64encode((STATIC / "icon.svg").read_bytes()).decode()
    return script, css, icon


def render(model_info, saved):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    env.globals["url_for"] = no_url_for
    return env.get_template("index.html").render(model=model_info, saved=saved)


# -- from a trace to a page ---------------------------------------------------------------------------------
def check_model(trace, m):
    if m is None:
        raise ExportError("Saving a trace as a page needs the model that ran it (for its card and the "
                          "next-token strings): pass model=gpt2np.load(...); a trace from Model.run "
                          "carries its model already.")
    cfg = m.config
    if trace.model_name and trace.model_name != m.info.name:
        raise ExportError(f"This trace was computed by {trace.model_name!r}, not by {m.info.name!r}: "
                          "pass the model that ran it.")
    q = trace["blocks.0.attn.hook_q"]
    if trace.n_layer != cfg.n_layer or q.shape[1:] != (cfg.n_head, cfg.d_head):
        raise ExportError(f"The trace's shapes ({trace.n_layer} layers, hook_q {q.shape}) are not "
                          f"those of {m.info.name}: pass the model that ran it.")


def page(trace, model=None, *, text=None, bos=False, layer=0, head=0, query=None, layers=None,
         heads=None, qk=None, values=None, max_mb=DEFAULT_MAX_MB):
    """The whole page for a trace -> (html, Snapshot). text/bos: the input as the user gave it
    (shown in the sentence box; default the trace's tokens joined, or its ids)."""
    m = model if model is not None else getattr(trace, "model", None)
    check_model(trace, m)
    choice = choose(m.config, trace.n_tokens, layer, head, query, layers, heads, qk, values, max_mb)
    engine = trace.engine or m.engine
    ids = [int(i) for i in trace.ids]
    run = Run(run_handle(m, ids, bos), trace, bos, 0.0)
    if m.tokenizer is not None:
        input_ = {"text": text if text is not None else "".join(trace.tokens), "bos": bool(bos)}
    else:
        input_ = {"ids": ids[1:] if bos else ids, "bos": bool(bos)}
    view = {"layer": choice.layer, "head": choice.head, "q": choice.query, "k": None}
    script, css, icon = page_parts()
    info = model_summary(m, engine)
    saved = {"csp": content_security_policy(script, css), "css": css, "script": script, "icon": icon,
             "data": "", "holds": "",
             "text": input_["text"] if "text" in input_ else " ".join(map(str, input_["ids"]))}
    shell = render(info, saved)                       # the page without its data: its size counts
    snap = build_snapshot(run, m, engine, choice, len(shell.encode()), input_, view, trace)
    saved.update(data=script_json(snap.data), holds=snap.data["holds"]["text"])
    out = render(info, saved)
    size = len(out.encode())
    if size > choice.max_bytes:
        raise ExportError(f"The file came out at {size / MB:.2f} MB, over the {choice.max_bytes / MB:g} MB "
                          "asked for: the estimate of its parts was wrong (a bug in viewer/export/).")
    return out, snap


def iframe(page_html, caption, height=IFRAME_HEIGHT):
    """The page inside an <iframe srcdoc>: its own document, origin and CSP, so the notebook's
    CSS and scripts and the view cannot touch each other, and two views never share state. A
    line of text above it stays when a notebook that is not trusted strips the iframe."""
    return (f'<div class="gpt2np-view"><p style="margin: 0 0 4px; font-size: 12px; color: #666">'
            f'{html.escape(caption)}</p>'
            f'<iframe srcdoc="{html.escape(page_html, quote=True)}" sandbox="{SANDBOX}" '
            f'title="gpt2np attention viewer" width="100%" height="{int(height)}" '
            'frameborder="0"></iframe></div>')
