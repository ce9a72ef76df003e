"""One run of the viewer as one HTML file that opens from disk, and as an iframe in a notebook.

    python -m gpt2np export "sentence" --html out.html          (gpt2np/cli_export.py)
    gpt2np.save_html(trace, "out.html"); trace.to_html(); gpt2np.show(trace, layer=5, head=1)

The file is the viewer's own page: templates/index.html, static/*.js bundled into one inline
module script (`bundle`), viewer.css inline, and a snapshot of the answers to the API calls the
page makes, keyed by their request path (`runs/<handle>/query?head=1&ignore_sink=0&layer=0&query=5`,
parameters sorted). Each answer is made by the function the API itself calls (api.py's
describe_run, next_tokens, pattern_bytes, overview_bytes; ledger.py's query_panel, ledger,
pattern_row), so every number has one home. static/snapshot.js answers api.js's requests from
the snapshot and says "not in this file" for the rest (the analysis panels, heads left out).

What goes in, in this order, each item whole or not at all, while the file stays within `max_mb`:
  1. always: the model and the run, the next-token top-5 at every position, the thumbnails of
     every head (the overview), and the opening head's heatmap;
  2. the opening head's exact numbers, if it is one of the `qk` heads;
  3. the heatmaps of the chosen heads (`layers` × `heads`, default every head), layer by layer;
  4. the exact numbers of the other `qk` heads that have their heatmap in, in order;
  5. the value ledgers of the `values` heads that have their heatmap in, in order.
Exact numbers are, for every query, its top-5 keys with and without position 0 (the Q·K panel:
q, k, q·k, score, p), the ledgers of those keys and the row's exact weights; a value ledger
(ledger.value_ledger), for every query, what the head moves: v, p·v, z and its write through
W_O. The default `qk` is the opening head's layer and the default `values` the opening head,
added only while the file stays within SMALL_MB (the opening head's exact numbers always, when
they fit): at 64 tokens of GPT-2 small a head's exact numbers are about 200 kB and its value
ledgers about 1 MB, so a whole layer of them (or q and k of every head, 4.7 MB of float32) would
not fit in a 2 MB file.
Heatmaps and thumbnails are base64 bytes (the wire format of wire.py). The JSON answers are
gzip-compressed, one pack per head plus one for the run, and inflated by the page with the
browser's DecompressionStream. A Content-Security-Policy in the page allows its own two inline
elements (by hash) and data:/blob: images, and nothing else: no request of any kind.

A new kind of API call goes into the snapshot with one entry in `answers_of_head` or
`values_of_head` (calls with a layer and a head) or `run_answers` (the rest): its key is the
request path the page asks for.
"""

import base64
import gzip
import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import jinja2

from gpt2np import GPT2npError, __version__
from gpt2np.heads import check_head, head_name, parse_heads

from .api import describe_run, model_summary, next_tokens, overview_bytes, pattern_bytes
from .ledger import ledger, pattern_row, query_panel, value_ledger
from .runs import Run, finite, run_handle

HERE = Path(__file__).resolve().parent
STATIC, TEMPLATES = HERE / "static", HERE / "templates"
FORMAT = 1                   # the snapshot's layout, read by static/snapshot.js
DESCRIPTIONS = 8192          # bytes kept for what the file says it holds ("holds", "missing")
MB = 1_000_000
DEFAULT_MAX_MB = 50          # a file
SMALL_MB = 2                 # the default qk adds heads beyond the opening one up to this size
NOTEBOOK_MAX_MB = 2.5        # a notebook view: outputs are saved in the .ipynb and kept in the page
IFRAME_HEIGHT = 900          # pixels; the page scrolls inside the frame
# The iframe's sandbox: scripts run, PNG/SVG exports download; no same-origin access to the
# notebook (an opaque origin), no popups, no forms, no top navigation.
SANDBOX = "allow-scripts allow-downloads"

# What the live viewer computes on request and a file does not hold, by the endpoint's last
# path segment (viewer/analysis.py, api.py).
SERVER_ONLY = {"heads": "the heads table", "lens": "the logit lens", "ablate": "ablation",
               "pair": "the minimal pair", "diff": "the minimal pair", "findings": "the findings report",
               "walk": "the walk through a block (it runs the input again)",
               "attribution": "the direct logit attribution", "trace.npz": "the whole trace (.npz)"}


class ExportError(GPT2npError):
    pass


# -- what goes in ----------------------------------------------------------------------------------
def parse_layers(spec, n, what="layer"):
    """None or "all" -> every index; "0-3,7", "0 5" or a list of ints -> those, sorted and checked."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return list(range(n))
    parts = re.split(r"[\s,]+", spec.strip()) if isinstance(spec, str) else list(spec)
    out = set()
    for part in parts:
        if part == "":
            continue
        try:
            lo, _, hi = str(part).partition("-") if isinstance(part, str) else (part, "", "")
            lo, hi = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise ExportError(f"Cannot read the {what} {str(part)[:20]!r}: give numbers and ranges, "
                              f"e.g. 0-3,7, or 'all'.") from None
        if not 0 <= lo <= hi < n:
            raise ExportError(f"There is no {what} {part}: this model has {what}s 0–{n - 1}.")
        out.update(range(lo, hi + 1))
    if not out:
        raise ExportError(f"No {what} given: name at least one (e.g. 0-3), or 'all'.")
    return sorted(out)


@dataclass
class Choice:
    """What the caller asked for: the opening view, the heads wanted, the budgets."""
    layer: int = 0
    head: int = 0
    query: int | None = None          # None: the last token (as the live page)
    heatmaps: list = field(default_factory=list)    # [(layer, head)] wanted, in order
    exact: list = field(default_factory=list)       # [(layer, head)] wanted, in order
    values: list = field(default_factory=list)      # [(layer, head)] wanted, in order
    max_bytes: int = DEFAULT_MAX_MB * MB
    exact_bytes: int = DEFAULT_MAX_MB * MB          # the file's size up to which step 4 adds heads
    values_bytes: int = DEFAULT_MAX_MB * MB         # ... and step 5


def heads_option(spec, default, every, config):
    """None -> `default`; "all", "none"; or heads as for gpt2np.heads.parse_heads ("5.1 5.5")."""
    if spec is None:
        return default
    if isinstance(spec, str) and spec.strip().lower() in ("all", "none"):
        return every if spec.strip().lower() == "all" else []
    return parse_heads(spec, config)


def choose(config, T, layer=0, head=0, query=None, layers=None, heads=None, qk=None, values=None,
           max_mb=DEFAULT_MAX_MB):
    """The options of to_html, checked -> Choice. qk: None (the opening head's layer, within
    SMALL_MB), "all", "none", or heads as for gpt2np.heads.parse_heads ("5.1 5.5"); values: the
    same, None being the opening head within SMALL_MB."""
    layer, head = check_head(config, layer, head)
    if query is not None and not 0 <= query < T:
        raise ExportError(f"The query {query} is out of range: the input has tokens 0–{T - 1}.")
    if isinstance(max_mb, bool) or not isinstance(max_mb, (int, float)) or not max_mb > 0:
        raise ExportError(f"max_mb must be a positive number of megabytes, got {max_mb!r}.")
    max_bytes = int(max_mb * MB)
    chosen_layers = parse_layers(layers, config.n_layer, "layer")
    chosen_heads = parse_layers(heads, config.n_head, "head")
    heatmaps = [(L, h) for L in chosen_layers for h in chosen_heads]
    every = [(L, h) for L in range(config.n_layer) for h in range(config.n_head)]
    small = min(max_bytes, SMALL_MB * MB)
    exact = heads_option(qk, [(layer, h) for h in range(config.n_head)], every, config)
    vals = heads_option(values, [(layer, head)], every, config)
    return Choice(layer, head, query, heatmaps, exact, vals, max_bytes,
                  small if qk is None else max_bytes, small if values is None else max_bytes)


# -- the answers -------------------------------------------------------------------------------------
def call_key(path, **params):
    """The key of an answer: its request path after /api/ with the parameters sorted by name, as
    static/snapshot.js makes it from the URL api.js asks for."""
    return path + ("?" + urlencode(sorted(params.items())) if params else "")


def run_answers(run, m, engine):
    """The calls that name no head: the model, the run, the next-token lists -> {key: answer}."""
    base = f"runs/{run.handle}"
    summary = {**describe_run(run, m, engine), "cached": True, "saved": True}
    answers = {"model": model_summary(m, engine), "run": summary, base: summary}
    for i in range(run.n_tokens):
        answers[call_key(base + "/next", position=i)] = next_tokens(run, i, m)
    return answers


def answers_of_head(run, layer, head):
    """A head's exact numbers -> {key: answer}: for every query the top-5 keys with and without
    position 0 (query), the exact row (row), and the ledgers of the keys those two lists show."""
    base, answers = f"runs/{run.handle}", {}
    for i in range(run.n_tokens):
        keys = set()
        for sink in (0, 1):
            panel = query_panel(run, layer, head, i, bool(sink))
            answers[call_key(base + "/query", layer=layer, head=head, query=i, ignore_sink=sink)] = panel
            keys.update(k["position"] for k in panel["keys"])
        answers[call_key(base + "/row", layer=layer, head=head, query=i)] = pattern_row(run, layer, head, i)
        for j in sorted(keys):
            answers[call_key(base + "/ledger", layer=layer, head=head, query=i, key=j)] = \
                ledger(run, layer, head, i, j)
    return answers


def values_of_head(run, m, layer, head):
    """A head's value ledgers -> {key: answer}: what it moves at every query."""
    base, trace = f"runs/{run.handle}", run.trace()
    return {call_key(base + "/value", layer=layer, head=head, query=i): value_ledger(m, trace, layer, head, i)
            for i in range(run.n_tokens)}


def pack(answers):
    """{key: answer} -> base64 of gzip-compressed JSON (static/snapshot.js inflates it)."""
    data = json.dumps(finite(answers), allow_nan=False, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(data, compresslevel=9, mtime=0)).decode()


def bytes_answer(data_headers):
    data, headers = data_headers
    return {"headers": headers, "data": base64.b64encode(data).decode()}


def entry_size(key, value):
    """Bytes that `"key":value,` adds to the snapshot's JSON text."""
    return len(json.dumps({key: value}, separators=(",", ":"))) - 1


@dataclass
class Snapshot:
    data: dict                 # the JSON embedded in the page
    heatmaps: list             # [(layer, head)] whose heatmap is in
    exact: list                # [(layer, head)] whose exact numbers are in
    values: list               # [(layer, head)] whose value ledgers are in


def build_snapshot(run, m, engine, choice, page_bytes, input_, view):
    """Fill the snapshot in the order of the module docstring, within choice.max_bytes (counting
    the page itself, `page_bytes`)."""
    cfg = m.config
    packs = {"run": pack(run_answers(run, m, engine))}
    binary = {call_key(f"runs/{run.handle}/overview"): bytes_answer(overview_bytes(run))}
    size = (page_bytes + sum(map(entry_size, packs, packs.values())) + entry_size("input", input_) +
            sum(map(entry_size, binary, binary.values())) + DESCRIPTIONS)
    heatmaps, exact, values = [], [], []
    answers = {}                       # pack name ("L.H") -> the head's answers so far

    def add_heatmap(L, h, forced=False):
        nonlocal size
        key = call_key(f"runs/{run.handle}/pattern", layer=L, head=h)
        value = bytes_answer(pattern_bytes(run, L, h))
        if not forced and size + entry_size(key, value) > choice.max_bytes:
            return False
        binary[key], size = value, size + entry_size(key, value)
        heatmaps.append((L, h))
        return True

    def add_answers(L, h, new, limit, done):
        """The head's pack again with `new` answers in, if the file stays within `limit`."""
        nonlocal size
        name = head_name(L, h)
        value = pack({**answers.get(name, {}), **new})
        grows = entry_size(name, value) - (entry_size(name, packs[name]) if name in packs else 0)
        if size + grows > limit:
            return False
        answers[name], packs[name], size = {**answers.get(name, {}), **new}, value, size + grows
        done.append((L, h))
        return True

    opening = (choice.layer, choice.head)
    add_heatmap(*opening, forced=True)
    if size > choice.max_bytes:
        raise ExportError(f"The smallest file for this input (the run, the overview and one head's heatmap) "
                          f"is {size / MB:.1f} MB, more than the {choice.max_bytes / MB:g} MB allowed: give a "
                          "larger max_mb (--max-mb) or a shorter input.")
    if opening in choice.exact:
        add_answers(*opening, answers_of_head(run, *opening), choice.max_bytes, exact)
    for L, h in choice.heatmaps:
        if (L, h) != opening and not add_heatmap(L, h):
            break
    for L, h in choice.exact:
        if (L, h) != opening and (L, h) in heatmaps and \
                not add_answers(L, h, answers_of_head(run, L, h), choice.exact_bytes, exact):
            break
    for L, h in choice.values:
        if (L, h) in heatmaps and not add_answers(L, h, values_of_head(run, m, L, h), choice.values_bytes, values):
            break
    heatmaps.sort()
    exact.sort()
    values.sort()
    holds = describe_holds(cfg, run.n_tokens, heatmaps, exact, values)
    data = {"format": FORMAT, "handle": run.handle, "input": input_, "view": view, "holds": holds,
            "missing": missing_notes(holds, input_), "packs": packs, "bytes": binary}
    return Snapshot(data, heatmaps, exact, values)


# -- what the file says it holds -------------------------------------------------------------------------
def describe_heads(heads, n_layer, n_head):
    """[(layer, head)] -> "every head (144)", "layers 0–4", "layer 0 and 5.1 5.3", "none"."""
    if not heads:
        return "none"
    if len(heads) == n_layer * n_head:
        return f"every head ({len(heads)})"
    by_layer = {}
    for L, h in heads:
        by_layer.setdefault(L, []).append(h)
    full = [L for L, hs in by_layer.items() if len(hs) == n_head]
    runs_ = []
    for L in full:
        if runs_ and runs_[-1][1] == L - 1:
            runs_[-1][1] = L
        else:
            runs_.append([L, L])
    parts = [f"layer {a}" if a == b else f"layers {a}–{b}" for a, b in runs_]
    parts += [" ".join(head_name(L, h) for h in hs) for L, hs in by_layer.items() if L not in full]
    return " and ".join(parts)


def describe_holds(cfg, T, heatmaps, exact, values):
    heat, ex, val = (describe_heads(x, cfg.n_layer, cfg.n_head) for x in (heatmaps, exact, values))
    names = lambda heads: [head_name(*x) for x in heads]  # noqa: E731
    return {"tokens": T, "heatmaps": names(heatmaps), "exact": names(exact), "values": names(values),
            "heatmaps_text": heat, "exact_text": ex, "values_text": val,
            "text": (f"{T} token{'s' * (T != 1)}; heatmaps of {heat}; exact numbers (top-5 keys, Q·K panel, "
                     f"ledgers) of {ex}; value ledgers of {val}; next-token top-5 at every position; "
                     f"thumbnails of every head. Saved by gpt2np {__version__}.")}


def missing_notes(holds, input_):
    """The "not in this file" messages, by the kind of call (the request path's last segment)."""
    live = "open the live viewer (python -m viewer) for it"
    exact = (f"Not in this file: the top-5 keys, Q·K panel and ledger of this head (it holds them for "
             f"{holds['exact_text']}). Export again with --qk LAYER.HEAD (or --qk all, a larger --max-mb), "
             f"or {live}.")
    shown = input_.get("text") if input_.get("text") is not None else " ".join(map(str, input_["ids"]))
    shown = shown if len(shown) <= 80 else shown[:79] + "…"
    notes = {
        "value": (f"Not in this file: the value ledger of this head (it holds those of {holds['values_text']}). "
                  f"Export again with --values LAYER.HEAD (or a larger --max-mb), or {live}."),
        "pattern": (f"Not in this file: the heatmap of this head (it holds the heatmaps of "
                    f"{holds['heatmaps_text']}). Export again with --layers/--heads (or a larger "
                    f"--max-mb), or {live}."),
        "query": exact, "row": exact, "ledger": exact,
        "ledger-cell": ("Not in this file: the ledger of this cell. The file holds the ledgers of each query's "
                        "top-5 keys, with and without position 0 (the cells of the top-5 list and the Q·K "
                        f"panel); {live}."),
        "run": (f"This file holds one input: {json.dumps(shown, ensure_ascii=False)}. To see another, export "
                f"it (python -m gpt2np export \"…\" --html FILE) or {live.replace(' for it', '')}."),
        "*": f"Not in this file: {live}.",
    }
    for kind, what in SERVER_ONLY.items():
        notes[kind] = (f"Not in this file: {what} is computed on request by the live viewer's server. "
                       "For it, run the same input in the live viewer (python -m viewer --model …).")
    return notes


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
    parts = [f"// gpt2np viewer {__version__}: viewer/static/*.js bundled by viewer/export.py, "
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
    snap = build_snapshot(run, m, engine, choice, len(shell.encode()), input_, view)
    saved.update(data=script_json(snap.data), holds=snap.data["holds"]["text"])
    out = render(info, saved)
    size = len(out.encode())
    if size > choice.max_bytes:
        raise ExportError(f"The file came out at {size / MB:.2f} MB, over the {choice.max_bytes / MB:g} MB "
                          "asked for: the estimate of its parts was wrong (a bug in viewer/export.py).")
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
