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
from ..answers.panels import (
    LIST_K,
    SAMPLING_DEFAULTS,
    attribution_answer,
    heads_answer,
    induction_probe,
    lens_answer,
    sample_answer,
    walk_answer,
)
from ..answers.runs import finite
from .choose import MB, ExportError

FORMAT = 1                   # the snapshot's layout, read by static/snapshot.js
DESCRIPTIONS = 8192          # bytes kept for what the file says it holds ("holds", "missing")

# What the live viewer computes on request: a file holds the panels of one run at its opening view
# (`panel_answers`), and none of what runs the model again. By the endpoint's last path segment
# (viewer/routes/analysis.py, values.py, generation.py, api.py).
SAVED_AT_OPENING = {"heads": "the heads table", "lens": "the logit lens",
                    "attribution": "the direct logit attribution", "sample": "the sampling ledger",
                    "walk": "the walk through a block"}
SERVER_ONLY = {"ablate": "ablation (it runs the model again)",
               "pair": "the minimal pair (it runs a second sentence)",
               "diff": "the minimal pair (it runs a second sentence)",
               "findings": "the findings report (it runs sentences of its own)",
               "generate": "Generate (it runs the model on each new token)",
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


def panel_answers(run, m, trace, layer, head, position):
    """The panels at the opening view, made as the API makes them -> {key: answer}: the heads
    table, the logit lens and the attribution at `position` (following the model's top-1), the
    sampling ledger after the last token (default settings, and greedy), and the walk of
    (layer, head, position) through its block. All from this one forward pass's trace, plus the
    model's induction probe for the heads table (a forward pass of its own, as the live viewer
    makes once)."""
    base, last = f"runs/{run.handle}", run.n_tokens - 1
    greedy = {**SAMPLING_DEFAULTS, "greedy": True}
    answers = {
        call_key(base + "/lens", position=position, k=LIST_K): lens_answer(m, run, position),
        call_key(base + "/attribution", position=position): attribution_answer(m, run, position),
        # the page asks with its temperature box's "1", and greedy=1 when ticked (static/api.js)
        call_key(base + "/sample", temperature=1): sample_answer(m, run, last, SAMPLING_DEFAULTS),
        call_key(base + "/sample", temperature=1, greedy=1): sample_answer(m, run, last, greedy),
        call_key(base + "/walk", layer=layer, head=head, query=position):
            walk_answer(m, run, trace, layer, head, position),
    }
    if run.n_tokens >= 2:                   # the page asks for the table only then
        answers[call_key(base + "/heads")] = heads_answer(m, run, induction_probe(m))
    return answers


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


def build_snapshot(run, m, engine, choice, page_bytes, input_, view, trace):
    """Fill the snapshot in the order of the module docstring, within choice.max_bytes (counting
    the page itself, `page_bytes`). `trace`: the run's full trace (for the walk)."""
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
    position = run.n_tokens - 1 if choice.query is None else choice.query
    panels_pack = pack(panel_answers(run, m, trace, *opening, position))
    panels = entry_size("panels", panels_pack) + size <= choice.max_bytes
    if panels:
        packs["panels"], size = panels_pack, size + entry_size("panels", panels_pack)
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
    holds = describe_holds(cfg, run.n_tokens, heatmaps, exact, values,
                           {"layer": opening[0], "head": opening[1], "query": position} if panels else None)
    data = {"format": FORMAT, "handle": run.handle, "input": input_, "view": view, "holds": holds,
            "missing": missing_notes(holds, input_, m.info.name),
            "live_only": sorted({*SAVED_AT_OPENING, *SERVER_ONLY}), "packs": packs, "bytes": binary}
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


def describe_holds(cfg, T, heatmaps, exact, values, panels=None):
    """What the file holds, as lists and as one sentence. panels: the opening view whose panels
    (`panel_answers`) are in, {"layer", "head", "query"}, or None."""
    heat, ex, val = (describe_heads(x, cfg.n_layer, cfg.n_head) for x in (heatmaps, exact, values))
    names = lambda heads: [head_name(*x) for x in heads]  # noqa: E731
    at = (f"the heads table; the logit lens, the attribution and the walk (head "
          f"{head_name(panels['layer'], panels['head'])}) at position {panels['query']}; the sampling "
          "ledger of the next token; " if panels else "")
    return {"tokens": T, "heatmaps": names(heatmaps), "exact": names(exact), "values": names(values),
            "heatmaps_text": heat, "exact_text": ex, "values_text": val, "panels": panels,
            "text": (f"{T} token{'s' * (T != 1)}; heatmaps of {heat}; exact numbers (top-5 keys, Q·K panel, "
                     f"ledgers) of {ex}; value ledgers of {val}; next-token top-5 at every position; "
                     f"thumbnails of every head; {at}Saved by gpt2np {__version__}.")}


def live_command(model_name):
    """The command that starts the live viewer on this file's model, as the notes quote it."""
    return f"`python -m viewer --model {model_name}`"


def missing_notes(holds, input_, model_name):
    """What the page says of what the file does not hold, by the kind of call (the request path's
    last segment). "Not in this file: …" answers a request for a head or cell left out; the
    panels that need the live server get a quiet note with the command (static/snapshot.js
    marks those answers `live_only`, and the page shows them as notes, not errors)."""
    command = live_command(model_name)
    live = f"open the live viewer ({command}) for it"
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
    where = holds["panels"]
    for kind, what in SAVED_AT_OPENING.items():
        if where is None:
            saved = f"This file has no room for {what} (a larger --max-mb makes room)"
        elif kind == "heads":
            saved = f"This file holds {what} of its own input"
        elif kind == "sample":
            saved = f"This file holds {what} at the default settings and with greedy"
        else:
            head = f" of head {head_name(where['layer'], where['head'])}" if kind == "walk" else ""
            saved = (f"This file holds {what}{head} at position {where['query']}, the token it opens at, "
                     "following the model's top-1" if kind != "walk" else
                     f"This file holds {what}{head} at position {where['query']}, the token it opens at")
        notes[kind] = f"{saved}. For any other, run {command} and type the same input there."
    for kind, what in SERVER_ONLY.items():
        notes[kind] = (f"{what[0].upper() + what[1:]} needs the live viewer: run {command} and type "
                       "the same input there.")
    return notes
