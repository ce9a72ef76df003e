"""The docs name what is there: every backquoted repository path in README.md and docs/*.md exists
(and every relative link between the docs, and every dotted name of the code such as
`gpt2np.analysis.sink_mass`), docs/testing.md's table names every test file, and
README.md's file table names every module of the code.

A repository path is a backquoted word whose first part is a top-level folder of the repository
(`gpt2np/…`, `tests/…`, `docs/…`), or a top-level file; `*` in it is a glob that must match.
Left out: `weights/…` and `test-artifacts/…`, which name what a run writes (the download cache,
the tests' output), not files of the repository.
"""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
WRITTEN_BY_RUNS = ("weights", "test-artifacts")
CODE = ("gpt2np", "viewer", "benchmarks", "scripts")
FILE_NAME = re.compile(r"\.(css|js|html|py|md|json|txt|npz)$")           # viewer.css: a file, not a module


def top_level():
    return {p.name for p in REPO.iterdir() if not p.name.startswith(".") or p.name == ".ci"}


def backquoted(text):
    return re.findall(r"`([^`\s]+)`", text)


def repository_paths(text, top):
    """The backquoted words of `text` that name a repository path (see the module's docstring)."""
    out = []
    for word in backquoted(text):
        path = re.sub(r"(:\d+(-\d+)?|#.*|::.*)$", "", word.rstrip(".,;:"))   # file.py:12, file.md#part
        first = path.split("/")[0]
        if first in top and first not in WRITTEN_BY_RUNS and ("/" in path or (REPO / path).is_file()):
            out.append(path)
    return out


def dotted_exists(word):
    """A dotted name such as `gpt2np.analysis.sink_mass`: each part a package, a module, or a name
    its package's __init__.py holds; what follows a module (its attributes) is not checked."""
    parts = re.split(r"[(\[]", word)[0].rstrip(".").split(".")
    path = REPO / parts[0]
    for part in parts[1:]:
        if part in ("*", "") or (path / f"{part}.py").is_file():
            return True
        if (path / part).is_dir():
            path = path / part
            continue
        init = path / "__init__.py"
        return init.is_file() and re.search(rf"\b{re.escape(part)}\b", init.read_text(encoding="utf-8")) is not None
    return True


def exists(path):
    return any(REPO.glob(path)) if "*" in path else (REPO / path).exists()


def missing_paths(doc_paths):
    top = top_level()
    missing = []
    for doc in doc_paths:
        text = doc.read_text(encoding="utf-8")
        missing += [f"{doc.name}: `{p}`" for p in repository_paths(text, top) if not exists(p)]
        missing += [f"{doc.name}: `{w}`" for w in backquoted(text)
                    if w.startswith(tuple(f"{package}." for package in CODE)) and not FILE_NAME.search(w)
                    and not dotted_exists(w)]
        for link in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text):
            if "://" not in link and not (doc.parent / link).exists():
                missing.append(f"{doc.name}: link ({link})")
    return missing


def test_every_path_in_the_docs_exists():
    missing = missing_paths(DOCS)
    assert not missing, "paths in the docs that do not exist:\n" + "\n".join(missing)


def test_a_wrong_path_is_found(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("See `gpt2np/model.py`, `gpt2np/no_such_module.py`, `docs/*.md`, `tests/*/test_nothing*.py`, "
                   "`weights/gpt2/model.safetensors` (the cache), `owner/name`, [cli](cli.md), "
                   "`gpt2np.analysis.sink_mass`, `gpt2np.load(\"demo\")`, `gpt2np.bench`.\n", encoding="utf-8")
    (tmp_path / "cli.md").write_text("", encoding="utf-8")
    assert missing_paths([doc]) == ["doc.md: `gpt2np/no_such_module.py`", "doc.md: `tests/*/test_nothing*.py`",
                                    "doc.md: `gpt2np.bench`"]


def test_testing_md_names_every_test_file():
    named = set(backquoted((REPO / "docs" / "testing.md").read_text(encoding="utf-8")))
    files = sorted(p for p in (REPO / "tests").rglob("*.py")
                   if p.name.startswith("test_") or p.name == "conftest.py" and p.parent.name == "viewer")
    missing = [str(p.relative_to(REPO)) for p in files if p.name not in named]
    assert not missing, "docs/testing.md's table does not name: " + ", ".join(missing)


def table_rows(text):
    """{first cell without backquotes: the whole row} of every table row of README.md."""
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    return {re.match(r"\| `([^`]+)`", row).group(1): row for row in rows}


def test_readme_file_table_names_every_module():
    rows = table_rows((REPO / "README.md").read_text(encoding="utf-8"))
    modules = sorted(p for package in CODE for p in (REPO / package).rglob("*.py")
                     if p.name != "__init__.py" and "__pycache__" not in p.parts)
    missing = []
    for path in modules:
        name = str(path.relative_to(REPO))
        folder = str(path.parent.relative_to(REPO)) + "/"
        if name not in rows and f"`{path.name}`" not in rows.get(folder, ""):
            missing.append(name)
    assert not missing, "README.md's file table does not name: " + ", ".join(missing)
