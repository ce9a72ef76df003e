"""The page's ES modules (static/*.js) bundled into one inline module script."""

import re
from pathlib import Path

from gpt2np import __version__

from .choose import ExportError

HERE = Path(__file__).resolve().parent.parent                # viewer/
STATIC, TEMPLATES = HERE / "static", HERE / "templates"

# -- the page ----------------------------------------------------------------------------------------
IMPORT = re.compile(r'^import \{([^}]*)\} from "\./([\w.-]+\.js)";[ \t]*$', re.M)
EXPORT = re.compile(r"^export (async function\*?|function\*?|class|const) (\w+)", re.M)
UNBUNDLED = re.compile(r"^[ \t]*(import|export)\b|\bimport\s*\(|\bimport\.meta\b", re.M)


def module_var(name):
    return "__gpt2np_" + re.sub(r"\W", "_", name[:-3])


def bundle(static=STATIC, entry="app.js"):
    """The ES modules reachable from `entry` as one script: each module's code in a function of
    its own (so top-level names never collide), run in dependency order; `import { a, b as c }
    from "./x.js"` becomes `const { a, b: c } = <x's exports>`, `export function f` a plain
    function returned among the module's exports. Module scripts load from file:// only inline,
    hence this. Any other import or export form is refused (ExportError), never half-rewritten."""
    order, state = [], {}

    def visit(name, chain):
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ExportError(f"static/{name}: circular imports ({' -> '.join([*chain, name])}); "
                              "the bundler needs modules that import in one direction.")
        state[name] = "visiting"
        source = (static / name).read_text(encoding="utf-8")
        for _, dep in IMPORT.findall(source):
            visit(dep, [*chain, name])
        state[name] = "done"
        order.append((name, source))

    visit(entry, [])
    parts = [f"// gpt2np viewer {__version__}: viewer/static/*.js bundled by viewer/export/bundle.py, "
             "one function per module."]
    for name, source in order:
        body = IMPORT.sub(lambda m: "const { " + re.sub(r"\s+as\s+", ": ", m.group(1).strip()) +
                          " } = " + module_var(m.group(2)) + ";", source)
        exports = EXPORT.findall(body)
        body = EXPORT.sub(lambda m: f"{m.group(1)} {m.group(2)}", body)
        leftover = UNBUNDLED.search(body)
        if leftover:
            line = body[:leftover.start()].count("\n") + 1
            raise ExportError(f"static/{name}, line {line}: an import or export the bundler does not "
                              f"handle ({leftover.group(0).strip()!r}); use `import {{ a }} from \"./x.js\"` "
                              "and `export function|class|const`.")
        names = ", ".join(n for _, n in exports)
        parts.append(f"const {module_var(name)} = (() => {{\n{body}\nreturn {{ {names} }};\n}})();")
    return "\n".join(parts) + "\n"
