"""Every command shown in README.md and docs/*.md runs as written on the model it names.

Each line of a ```bash block is one case. A gpt2np command that names `--model demo` runs as it is;
one that names no model gets `--model demo` (the default, gpt2, is a download); one that names
another model is skipped with that reason — the docs give the demo's equivalent beside it. Commands
that start a server are checked against their `--help` (every option they use must exist there),
the benchmarks likewise (they time for minutes), and the rest (installs, test runs, training, Dask) are skipped,
each with its reason. A command fails the test on a non-zero exit status. Run in a temporary
directory holding the files the docs' commands read (book.txt, texts/, austen-heldout.txt,
pairs.jsonl)."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SUBCOMMANDS = ("findings", "generate", "corpus", "export", "download", "patch")
SERVERS = ("python -m viewer",)
OTHER = {        # how a line starts -> why it is not run here
    "pip ": "installs packages",
    "pytest": "runs the test suite (this test is part of it)",
    "dask ": "starts a Dask scheduler or worker",
    "GPT2NP_MODEL=demo flask": "starts Flask's own development server",
    "python scripts/train_demo_model.py": "trains a model (minutes to hours)",
    "python scripts/": "a maintenance script",
}


def command_lines():
    """(file name, line) for every non-empty, non-comment line of every ```bash block."""
    out = []
    for path in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
            out += [(path.name, line.strip()) for line in block.splitlines()
                    if line.strip() and not line.strip().startswith("#")]
    return out


def without_comment(line):
    """The line up to a shell comment (a # outside quotes, after a space)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def plan(line):
    """-> ("run", command) | ("help", command, options) | ("skip", reason)"""
    line = without_comment(line)
    for start, why in OTHER.items():
        if line.startswith(start):
            return "skip", why
    if " download" in line and "python -m gpt2np download" in line:
        return "skip", "downloads a model from the Hugging Face Hub"
    models = re.findall(r"--model\s+(\S+)", line)
    if line.startswith(SERVERS):
        options = re.findall(r"(?<!\S)(--[a-z-]+)", line)
        return "help", "python -m viewer --help", options
    if line.startswith("python -m benchmarks."):
        return "help", " ".join(line.split()[:3]) + " --help", re.findall(r"(?<!\S)(--[a-z-]+)", line)
    if "python -m gpt2np" not in line:
        return "skip", "not a gpt2np command"
    if any(m != "demo" for m in models):
        return "skip", f"needs {', '.join(m for m in models if m != 'demo')} (a download; offline here): " \
                       "the docs give the demo's equivalent beside it"
    if not models:                                   # the default model is gpt2: the demo instead
        def add_model(m):
            sub = m.group(2)
            return f"{m.group(1)}{(' ' + sub) if sub else ''} --model demo"
        line = re.sub(rf"(python -m gpt2np)(?: ({'|'.join(SUBCOMMANDS)}))?(?=\s|$)", add_model, line, count=1)
    return "run", line


CASES = command_lines()


def case_id(case):
    name, line = case
    return f"{name}: {line[:70]}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The files the docs' commands read: a short Austen text in several places; pairs.jsonl, the
    card's minimal pair both ways round."""
    from demofacts import CARD
    d = tmp_path_factory.mktemp("docs-commands")
    text = max((s["text"] for s in CARD["examples"]["sentences"]), key=len)      # the longest
    (d / "book.txt").write_text(text + "\n")
    (d / "austen-heldout.txt").write_text(text + "\n")
    (d / "texts").mkdir()
    (d / "texts" / "a.txt").write_text(text + "\n")
    pair = CARD["examples"]["pair"]
    swapped = {"clean": pair["corrupted"], "corrupted": pair["clean"], "answer": pair["versus"],
               "versus": pair["answer"]}
    (d / "pairs.jsonl").write_text(json.dumps(pair) + "\n" + json.dumps(swapped) + "\n")
    return d


def shell(command, cwd):
    command = re.sub(r"(?<![\w/.-])python(?= )", shlex.quote(sys.executable), command)
    env = dict(os.environ, HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_docs_command_runs(case, workdir):
    name, line = case
    p = plan(line)
    if p[0] == "skip":
        pytest.skip(f"{name}: {p[1]}")
    r = shell(p[1], workdir)
    assert r.returncode == 0, f"{name}: {p[1]}\nexit {r.returncode}\n{r.stderr[-2000:]}"
    if p[0] == "help":
        missing = [o for o in p[2] if o not in r.stdout]
        assert not missing, f"{name}: {line}: options not in {p[1]}: {missing}"


def test_the_docs_name_a_demo_command_for_each_tool():
    """Where the docs show a tool on GPT-2, they show it on the demo too."""
    ran = [plan(line) for _, line in CASES]
    runs = " ".join(p[1] for p in ran if p[0] == "run")
    for tool in ("--lens", "--ablate", "--pair", "--attribute", "export", "generate", "corpus"):
        assert tool in runs, tool
    counts = {kind: sum(p[0] == kind for p in ran) for kind in ("run", "help", "skip")}
    print(f"\ndocs commands: {json.dumps(counts)}")
    assert counts["run"] >= 20
