"""The import graph of the project's own modules (gpt2np/, viewer/, benchmarks/), read from the
source with `ast`: imports at module level and inside functions both count.

- no cycle among the project's modules;
- gpt2np imports viewer only through the seam gpt2np/html.py (the page builder of to_html/show,
  which the export command also uses for its size bounds);
- gpt2np/model.py, the reading path, imports nothing but NumPy and gpt2np/ops.py;
- nothing in gpt2np or viewer imports benchmarks.
The seam's one edge up (gpt2np.html -> viewer.export) is left out of the cycle search: the viewer
is built on gpt2np, so that door necessarily leads back; it is opened only when a page is rendered.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("gpt2np", "viewer", "benchmarks")
SEAM = "gpt2np.html"


def module_name(path):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def imports_of(name, path, known):
    """The project modules `name` imports (`from a import b` counts a.b when that is a module)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:            # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph():
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges):
    """Every cycle found by a depth-first search, each as a list of modules (first == last)."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def in_package(name, package):
    return name == package or name.startswith(package + ".")


def test_the_graph_is_read():
    g = graph()
    assert {"gpt2np.ops", "gpt2np.model", "gpt2np.engine", "viewer.export.page", "benchmarks.bench"} <= set(g)
    assert g["gpt2np.engine"] >= {"gpt2np.model", "gpt2np.ops"}
    assert "viewer.export" in g[SEAM] and "gpt2np.api" in g["viewer"]
    assert "gpt2np.analysis.corpus.window" in g["gpt2np.analysis.corpus"]


def test_no_import_cycle():
    g = graph()
    g[SEAM] = {m for m in g[SEAM] if not in_package(m, "viewer")}
    found = cycles(g)
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_gpt2np_reaches_the_viewer_only_through_the_seam():
    upward = sorted(f"{name} -> {m}" for name, targets in graph().items()
                    if in_package(name, "gpt2np") and name != SEAM
                    for m in targets if in_package(m, "viewer"))
    assert not upward, "gpt2np imports the viewer outside gpt2np/html.py: " + ", ".join(upward)


def test_model_imports_numpy_and_ops_only():
    path = REPO / "gpt2np" / "model.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    assert names <= {"numpy", ".ops"}, f"gpt2np/model.py imports {sorted(names - {'numpy', '.ops'})}"


def test_nothing_installed_imports_the_benchmarks():
    bad = sorted(f"{name} -> {m}" for name, targets in graph().items() if not in_package(name, "benchmarks")
                 for m in targets if in_package(m, "benchmarks"))
    assert not bad, ", ".join(bad)
