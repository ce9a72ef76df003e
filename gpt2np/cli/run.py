"""`python -m gpt2np "sentence"`: the default command. Runs the model on one text and prints its
tokens, next-token predictions, a per-layer summary of the heads, and, on request, one head's
pattern and a query's top keys (or all of it as --json, the arrays with --save).

Only argument parsing and printing live here; the work is done by `gpt2np.load`, `Model.run` and
`gpt2np.analysis`.
"""

import argparse
import json

from .. import analysis
from ..analysis import interventions
from ..api import load
from ..errors import GPT2npError
from ..heads import check_head
from .options import (
    UsageError,
    add_bos_option,
    add_engine_option,
    add_model_option,
    add_text_argument,
    read_stdin,
    show,
)

SHADES = " ·░▒▓█"   # text heatmap: weight 0 -> ' ', 1 -> '█'


def build_parser():
    p = argparse.ArgumentParser(
        prog="gpt2np",
        description="Run GPT-2 (NumPy) on a sentence and show its tokens, next-token predictions "
                    "and attention. Subcommands: `gpt2np download [NAME]`, `gpt2np findings`, "
                    "`gpt2np corpus FILE`, `gpt2np export`, `gpt2np generate TEXT`, `gpt2np patch CLEAN CORRUPTED`.")
    add_text_argument(p, "the sentence to run")
    add_model_option(p)
    p.add_argument("--layer", type=int, help="show this layer's attention pattern (with --head)")
    p.add_argument("--head", type=int, help="show this head's attention pattern (with --layer)")
    p.add_argument("--query", type=int, help="list the top keys of this query position (with --layer/--head)")
    p.add_argument("--top-k", type=int, default=5, help="how many predictions / keys to list (default 5)")
    p.add_argument("--save", metavar="FILE.npz", help="save every trace array plus tokens and ids")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    add_bos_option(p, "the tokens")
    add_engine_option(p)
    return p


def check_options(args, model, T):
    if (args.layer is None) != (args.head is None):
        raise UsageError("--layer and --head go together: give both (e.g. --layer 5 --head 1).")
    if args.layer is not None:
        check_head(model.config, args.layer, args.head)
    if args.query is not None:
        if args.layer is None:
            raise UsageError("--query needs --layer and --head: which head's keys to rank.")
        if not 0 <= args.query < T:
            raise UsageError(f"--query {args.query} is out of range: the text has tokens 0–{T - 1}.")
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}.")


def layer_summary(trace):
    """Per layer: the head with the most mass on position 0 and the most previous-token head."""
    rows = []
    for layer in range(trace.n_layer):
        pattern = trace.pattern(layer)                                 # [H, T, T]
        sink, prev = analysis.sink_mass(pattern), analysis.previous_token_mass(pattern)
        rows.append({"layer": layer,
                     "sink_head": int(sink.argmax()), "sink_mass": float(sink.max()),
                     "prev_head": int(prev.argmax()), "prev_mass": float(prev.max())})
    return rows


def text_heatmap(pattern, tokens, width=12):
    labels = [show(t)[:width].ljust(width) for t in tokens]
    lines = [" " * (width + 6) + "keys →  (shade: weight 0 ' ' … 1 '█'; masked '-')"]
    for i, row in enumerate(pattern):
        cells = "".join(SHADES[min(int(w * (len(SHADES) - 1) + 0.5), len(SHADES) - 1)] if j <= i else "-"
                        for j, w in enumerate(row))
        lines.append(f"{i:4d} {labels[i]} |{cells}|")
    return "\n".join(lines)


def save_trace(trace, path):
    """Save to `path` (NumPy adds .npz when it is missing: say so); an unwritable path is a
    user error, not a traceback. Returns the path written."""
    path = path if path.endswith(".npz") else path + ".npz"
    try:
        trace.save(path)
    except OSError as e:
        raise GPT2npError(f"Cannot save the trace to {path}: {e.strerror or e}. "
                          "Give a writable file path ending in .npz.") from None
    return path


def run_command(argv):
    args = build_parser().parse_args(argv)
    text = read_stdin() if args.text == "-" else args.text
    model = load(args.model, engine=args.engine)
    trace = model.run(text, bos=args.bos)
    T = trace.n_tokens
    check_options(args, model, T)
    if args.save:
        args.save = save_trace(trace, args.save)

    result = {
        "model": {"name": model.info.name, "origin": model.info.origin, "n_params": model.info.n_params},
        "engine": trace.engine,
        "tokens": trace.tokens, "ids": trace.ids.tolist(),
        "next_token": interventions.top_tokens(model, trace.logits[-1], args.top_k),
        "layers": layer_summary(trace) if T > 1 else [],
    }
    if args.layer is not None:
        pattern = trace.pattern(args.layer, args.head)
        result["pattern"] = {"layer": args.layer, "head": args.head, "weights": pattern.tolist()}
        if args.query is not None:
            result["query"] = {
                "position": args.query, "n_keys": len(analysis.candidate_keys(args.query)),
                "keys": [{"position": j, "token": trace.tokens[j], "weight": w}
                         for j, w in analysis.top_keys(pattern, args.query, args.top_k)]}
    if args.save:
        result["saved"] = args.save

    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(f"model: {model.info.describe()} — engine: {trace.engine}")
    print(f"tokens ({T}): " + " ".join(f"{i}:{show(t)}" for i, t in enumerate(trace.tokens)))
    print(f"\nnext token after {show(trace.tokens[-1])} (position {T - 1}):")
    for rank, t in enumerate(result["next_token"], 1):
        print(f"  {rank}. {show(t['token']):<20} id {t['id']:<6} p = {t['p']:.4f}")
    print("\nheads per layer (mean over query positions 1…T-1):" if T > 1 else
          "\n(the per-layer head summary needs at least two tokens)")
    if T > 1:
        print("  layer   most on position 0     most on previous token")
    for r in result["layers"]:
        print(f"  {r['layer']:5d}   head {r['sink_head']:<3d} {r['sink_mass']:6.3f}       "
              f"head {r['prev_head']:<3d} {r['prev_mass']:6.3f}")
    if args.layer is not None:
        print(f"\nlayer {args.layer} head {args.head} attention pattern (rows: queries):")
        print(text_heatmap(trace.pattern(args.layer, args.head), trace.tokens))
    if "query" in result:
        print(f"\ntop {args.top_k} keys of query {args.query} {show(trace.tokens[args.query])}:")
        for k in result["query"]["keys"]:
            print(f"  {k['position']:4d} {show(k['token']):<20} {k['weight']:.4f}")
        if note := analysis.fewer_keys_note(args.query, args.top_k):
            print(f"  {note}")
    if args.save:
        print(f"\nsaved {len(trace)} arrays to {args.save}")
    return 0


