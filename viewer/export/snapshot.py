"""The snapshot: the answers to the API calls the page makes, keyed by request path, each made by
the function the API itself calls (viewer/answers), and what the file says it holds."""

import base64
import gzip
import json
from dataclasses import dataclass
from urllib.parse import urlencode

from gpt2np import __version__
from gpt2np.heads import head_name

from ..answers.describe import describe_run, model_summary, next_tokens, overview_bytes, pattern_bytes
from ..answers.ledger import ledger, pattern_row, query_panel, value_ledger
from ..answers.runs import finite
from .choose import MB, ExportError

FORMAT = 1                   # the snapshot's layout, read by static/snapshot.js
DESCRIPTIONS = 8192          # bytes kept for what the file says it holds ("holds", "missing")

# What the live viewer computes on request and a file does not hold, by the endpoint's last
# path segment (viewer/routes/analysis.py, api.py).
SERVER_ONLY = {"heads": "the heads table", "lens": "the logit lens", "ablate": "ablation",
               "pair": "the minimal pair", "diff": "the minimal pair", "findings": "the findings report",
               "walk": "the walk through a block (it runs the input again)",
               "attribution": "the direct logit attribution", "patch": "activation patching",
               "trace.npz": "the whole trace (.npz)"}



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
