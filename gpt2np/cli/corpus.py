"""`python -m gpt2np corpus FILE|DIR|- [options]`: head statistics over many texts (gpt2np.analysis.corpus).

Only argument parsing and printing live here. A progress bar (tqdm, on standard error) shows
windows/s and the time left; the results file is rewritten as the work goes, so Ctrl+C (exit 130,
with a line saying how to continue) loses nothing. User errors reach `cli.main`, which prints one
line.
"""

import argparse
import sys

from ..analysis import corpus
from ..engine import N_CORES
from ..errors import GPT2npError
from .options import ProgressBar, add_bos_option, add_engine_option, add_model_option, show


def build_parser():
    p = argparse.ArgumentParser(
        prog="gpt2np corpus",
        description="Every head's attention statistics and the original demo's predictions over "
                    "many texts, cut into token windows: means with 95%% intervals, histograms, "
                    "top examples. Results go to --out, which a rerun continues.")
    p.add_argument("source", metavar="FILE|DIR|-",
                   help="a UTF-8 text file, a directory (every *.txt below it), or - for standard "
                        "input; the text <|endoftext|> separates documents")
    add_model_option(p)
    p.add_argument("--window", type=int, default=128,
                   help="tokens per forward pass, <|endoftext|> included with --bos (default 128)")
    p.add_argument("--stride", type=int,
                   help="text tokens from one window's start to the next (default: the window's "
                        "text tokens, so that windows tile the text)")
    add_bos_option(p, "every window")
    p.add_argument("--max-windows", type=int, metavar="N",
                   help="measure only the first N windows (a rerun with a larger N or without it "
                        "continues)")
    p.add_argument("--workers", type=int, default=N_CORES,
                   help=f"worker processes on this machine (default {N_CORES}: one per core)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a Dask distributed cluster (tcp://host:port) instead; needs "
                        "pip install 'gpt2np[scale]'")
    p.add_argument("--out", default="stats.json",
                   help="results file, also the checkpoint (default stats.json)")
    p.add_argument("--restart", action="store_true",
                   help="replace an --out file that holds another run instead of refusing")
    p.add_argument("--top-k", type=int, default=5,
                   help="top windows and positions kept per head and statistic (default 5)")
    p.add_argument("--errors", choices=("strict", "replace"), default="strict",
                   help="invalid UTF-8: 'strict' refuses the input (default), 'replace' reads "
                        "such bytes as U+FFFD")
    p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between rewrites of --out while measuring (default 60)")
    add_engine_option(p)
    return p


def interval(iv, fmt="{:.3f}"):
    return "[" + ", ".join(fmt.format(x) for x in iv) + "]" if iv else "[—]"


def count(n, noun):
    """'1 document', '2 documents', '1,024 tokens'."""
    return f"{n:,} {noun}{'s' * (n != 1)}"


def print_report(r, out=None):
    p = lambda *a: print(*a, file=out or sys.stdout)  # noqa: E731
    m, inp, s = r["model"], r["input"], r["settings"]
    p(f"model: {m['name']} — {m['n_layer']} layers × {m['n_head']} heads — {m['origin']} — "
      f"engine: {m['engine']}")
    p(f"input: {count(len(inp['sources']), 'source')}, {count(inp['documents'], 'document')}, "
      f"{count(inp['tokens'], 'token')} -> {count(inp['windows'], 'window')} of "
      f"{s['window']} tokens (stride {s['stride']}{', <|endoftext|> first' if s['bos'] else ''})"
      + (f"; {count(inp['skipped_windows'], 'window')} of one token "
         "skipped" if inp["skipped_windows"] else ""))
    done = r["windows_measured"]
    p(f"measured: {done} of {count(inp['windows'], 'window')}" + ("" if r["complete"] else " (not all)"))
    p(f"\nPredictions of the original demo, per window ({r['intervals']['share']}):")
    for pr in r["predictions"]:
        if pr["windows"]:
            verdict = (f"holds in {pr['holds']} of {pr['windows']} windows: {pr['share']:.1%} "
                       f"{interval(pr['interval'], '{:.1%}')}")
        else:
            verdict = "not applicable to this model"
        p(f"  {pr['id']}. {pr['prediction']}\n     {verdict}")
    p("\nHeads (mean over windows of each window's mean over queries 1…T-1; 95% interval "
      "in brackets; type: the most frequent per window):")
    p("  head   type                 " + "  ".join(f"{name:<22}" for name in corpus.STATISTICS))
    for h in r["heads"]:
        share = h["types"].get(h["type"], 0) / done if done else 0
        cells = "  ".join(
            f"{st['mean']:.3f} {interval(st['interval'], '{:.3f}')}".ljust(22) if st["mean"] is not None
            else "—".ljust(22) for st in h["stats"].values())
        p(f"  {h['head']:<6} {(h['type'] or '—') + f' {share:.0%}':<20} {cells}")
    roles = r["published_roles"]
    if roles["applicable"]:
        p("\nPublished roles of GPT-2 small's heads, to compare with:")
        for role in roles["roles"]:
            p(f"  {role['role']} — {role['source']}")
            for h in role["heads"]:
                p(f"    {h['head']:<6} type {h['type']}: previous {h['previous']:.3f}, "
                  f"sink {h['sink']:.3f}, entropy {h['entropy']:.2f} bits")
    first = next((h for h in r["heads"] if h["top_positions"]["previous"]), None)
    if first:
        ex = first["top_positions"]["previous"][0]
        w = r["windows"][str(ex["window"])]
        p(f"\ntop examples per head and statistic are in the results file, e.g. head "
          f"{first['head']}'s strongest previous-token query: {show(w['tokens'][ex['position']])} "
          f"(window {ex['window']}, position {ex['position']}, weight {ex['value']:.3f})")


def run(args):
    for name, value in (("--workers", args.workers), ("--top-k", args.top_k),
                        ("--max-windows", args.max_windows)):
        if value is not None and value < 1:
            raise GPT2npError(f"{name} must be at least 1, got {value}.")
    texts = corpus.read_sources(args.source, args.errors)
    bar = ProgressBar("window")
    try:
        r = corpus.measure(args.model, texts, window=args.window, stride=args.stride, bos=args.bos,
                           top_k=args.top_k, workers=args.workers, scheduler=args.scheduler,
                           max_windows=args.max_windows, out=args.out, restart=args.restart,
                           checkpoint_every=args.checkpoint_every, progress=bar,
                           engine=args.engine)
    finally:
        bar.close()
    print_report(r)
    run_info = r["run"]
    if run_info["windows"]:
        where = f"Dask cluster {run_info['scheduler']}" if run_info["scheduler"] else "this machine"
        print(f"\n{run_info['windows']} windows in {run_info['seconds']:.1f} s: "
              f"{run_info['windows_per_s']:.2f} windows/s with {run_info['workers']} "
              f"worker{'s' * (run_info['workers'] != 1)} on {where}")
    print(f"results: {args.out}" + ("" if r["complete"] else
                                   " (not all windows: run the same command without --max-windows "
                                   "to continue)"))
    return 0


def corpus_command(argv):
    """`python -m gpt2np corpus ...`: 0 done, 130 interrupted (results kept); user errors
    (GPT2npError) reach cli.main (exit 2)."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except corpus.Interrupted as e:
        print(f"\ngpt2np corpus: interrupted after {e.done} of {e.total} windows; they are saved "
              f"in {e.out}. Run the same command again to continue from there.", file=sys.stderr)
        return 130
