"""Command line: `python -m gpt2np "sentence"`, `python -m gpt2np download [NAME]`, and the
dispatch to `python -m gpt2np findings ...` (its parsing and printing: `gpt2np/cli_findings.py`),
`python -m gpt2np generate ...` (`gpt2np/cli_generate.py`), `corpus ...` (`gpt2np/cli_corpus.py`)
and `export ...` (`gpt2np/cli_export.py`).

Only argument parsing and printing live here; the work is done by `gpt2np.load`, `Model.run` and
`gpt2np.analysis`. Every user error prints one line on stderr and exits with status 2.
"""

import argparse
import json
import os
import sys

from . import analysis
from .analysis import interventions
from .api import DEFAULT_ENGINE, ENGINES, load
from .errors import GPT2npError
from .files.hub import KNOWN_MODELS, resolve
from .heads import check_head

SHADES = " ·░▒▓█"   # text heatmap: weight 0 -> ' ', 1 -> '█'
DEFAULT_MODEL = "gpt2"


def build_parser():
    p = argparse.ArgumentParser(
        prog="gpt2np",
        description="Run GPT-2 (NumPy) on a sentence and show its tokens, next-token predictions "
                    "and attention. Subcommands: `gpt2np download [NAME]`, `gpt2np findings`, "
                    "`gpt2np corpus FILE`, `gpt2np export`, `gpt2np generate TEXT`.")
    p.add_argument("text", help="the sentence to run ('-' reads it from standard input)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"a name ({', '.join(['demo', *KNOWN_MODELS])}), a Hub repo id, or a "
                        f"model directory (default: {DEFAULT_MODEL}; 'demo' needs no download)")
    p.add_argument("--layer", type=int, help="show this layer's attention pattern (with --head)")
    p.add_argument("--head", type=int, help="show this head's attention pattern (with --layer)")
    p.add_argument("--query", type=int, help="list the top keys of this query position (with --layer/--head)")
    p.add_argument("--top-k", type=int, default=5, help="how many predictions / keys to list (default 5)")
    p.add_argument("--save", metavar="FILE.npz", help="save every trace array plus tokens and ids")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    p.add_argument("--bos", action="store_true", help="prepend <|endoftext|> to the tokens")
    add_engine_option(p)
    return p


def add_engine_option(p):
    p.add_argument("--engine", choices=list(ENGINES), default=DEFAULT_ENGINE,
                   help="'fast': the CPU schedule of engine.py; 'reference': model.py's plain math, "
                        f"to step through in a debugger; the same numbers (default: {DEFAULT_ENGINE})")


class UsageError(GPT2npError):
    pass


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


def show(s):
    """A token as printed: repr-like quotes so leading spaces and control characters show."""
    return json.dumps(s, ensure_ascii=False)


def text_heatmap(pattern, tokens, width=12):
    labels = [show(t)[:width].ljust(width) for t in tokens]
    lines = [" " * (width + 6) + "keys →  (shade: weight 0 ' ' … 1 '█'; masked '-')"]
    for i, row in enumerate(pattern):
        cells = "".join(SHADES[min(int(w * (len(SHADES) - 1) + 0.5), len(SHADES) - 1)] if j <= i else "-"
                        for j, w in enumerate(row))
        lines.append(f"{i:4d} {labels[i]} |{cells}|")
    return "\n".join(lines)


def read_stdin():
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GPT2npError(f"Standard input is not valid UTF-8: byte 0x{data[e.start]:02x} at offset "
                          f"{e.start}. Save the text as UTF-8.") from None


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


def download_command(argv):
    p = argparse.ArgumentParser(prog="gpt2np download",
                                description="Download a model's files ahead of time.")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL,
                   help=f"{', '.join(KNOWN_MODELS)} or a Hub repo id (default {DEFAULT_MODEL})")
    args = p.parse_args(argv)
    source = resolve(args.name)
    print(f"{args.name}: ready in {source.directory}")
    return 0


def findings_command(argv):
    from .cli_findings import findings_command  # imported here: cli_findings imports this module
    return findings_command(argv)


def generate_command(argv):
    from .cli_generate import main as generate_main  # its parsing and printing, in its own module
    return generate_main(argv)


def corpus_command(argv):
    from .cli_corpus import corpus_command  # imported here: cli_corpus imports this module
    return corpus_command(argv)


def export_command(argv):
    from .cli_export import export_command  # imported here: cli_export imports this module
    return export_command(argv)


SUBCOMMANDS = {"download": download_command, "findings": findings_command, "corpus": corpus_command,
               "export": export_command, "generate": generate_command}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    command = SUBCOMMANDS.get(argv[0]) if argv else None
    try:
        return command(argv[1:]) if command else run_command(argv)
    except GPT2npError as e:
        print(f"gpt2np: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:      # the reader left early (`| head`): stop quietly, as `cat` does
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        except (OSError, ValueError):
            pass
        return 141               # 128 + SIGPIPE, what a shell reports for such a pipe
