"""`python -m gpt2np patch CLEAN CORRUPTED --answer TOK --versus TOK [options]`: activation patching
(gpt2np.analysis.patching) — every site's grid as a text heatmap, the cells that restore most and
both logit differences; `--example` takes the model's own pair; `--pairs FILE` patches many pairs
on local worker processes or a Dask cluster (gpt2np.analysis.patching_pairs) and gives each cell's
mean with a 95 % interval.

Only argument parsing and printing live here. The progress bar (tqdm) goes to standard error, only
on a terminal or with --progress; Ctrl+C stops with one line and exit 130. User errors reach
`cli.main`, which prints one line (exit 2).
"""

import argparse
import json
import sys

from ..analysis.examples import examples_for
from ..analysis.patching import ALL_SITES, SITES, patch
from ..analysis.patching_pairs import RESAMPLES, patch_pairs, read_pairs
from ..api import load
from ..engine import N_CORES
from .options import (
    ProgressBar,
    UsageError,
    add_bos_option,
    add_engine_option,
    add_model_option,
    show,
)
from .run import SHADES

CELL = 6          # characters per heatmap cell: a shade and the number, "▓ 0.74"


def build_parser():
    p = argparse.ArgumentParser(
        prog="gpt2np patch",
        description="Activation patching: rerun CORRUPTED with one activation copied from CLEAN, site "
                    "by site, and measure how much of the clean answer comes back: LD = "
                    "logit(answer) − logit(versus), normalised 0 = corrupted, 1 = clean.")
    p.add_argument("clean", nargs="?", metavar="CLEAN", help="the clean text")
    p.add_argument("corrupted", nargs="?", metavar="CORRUPTED",
                   help="the corrupted text: as many tokens as CLEAN")
    p.add_argument("--answer", metavar="TOKEN", help="the clean run's answer: one token, e.g. ' he'")
    p.add_argument("--versus", metavar="TOKEN", help="the token it is compared with: one token")
    p.add_argument("--example", action="store_true",
                   help="patch the model's own example pair (CLEAN, CORRUPTED, --answer and --versus "
                        "from it unless given)")
    p.add_argument("--pairs", metavar="FILE",
                   help='many pairs: a JSON-lines file, {"clean", "corrupted", "answer", "versus"} '
                        "per line; prints each cell's mean with a 95%% interval over pairs")
    p.add_argument("--sites", default=",".join(SITES),
                   help=f"comma-separated, from {', '.join(ALL_SITES)} (default {','.join(SITES)})")
    p.add_argument("--head", metavar="L.H",
                   help="also patch this head's z position by position (the site z_position)")
    p.add_argument("--position", type=int, default=-1,
                   help="where the logits are read (default -1: the last token)")
    p.add_argument("--top", type=int, default=10, metavar="N",
                   help="how many of the cells that restore most to list (default 10)")
    add_model_option(p)
    add_bos_option(p, "both texts")
    add_engine_option(p)
    p.add_argument("--workers", type=int,
                   help=f"--pairs: worker processes on this machine (default {N_CORES}: one per core)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="--pairs: run on a Dask distributed cluster (tcp://host:port) instead")
    p.add_argument("--resamples", type=int,
                   help=f"--pairs: bootstrap resamples of the interval (default {RESAMPLES})")
    p.add_argument("--seed", type=int, help="--pairs: seed of the bootstrap (default 0)")
    p.add_argument("--progress", action="store_true",
                   help="show the progress bar on standard error even when it is not a terminal")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    return p


# -- text output ---------------------------------------------------------------------------------
def cell(value):
    """One heatmap cell: a shade for the value clipped to [0, 1] (' ' 0 … '█' 1) and the number;
    '>' and '<' mark values above 1 and below 0."""
    if value is None:
        return " " * (CELL - 1) + "-"
    shade = (">" if value > 1.005 else "<" if value < -0.005 else
             SHADES[min(int(value * (len(SHADES) - 1) + 0.5), len(SHADES) - 1)])
    return f"{shade}{value:5.2f}"


def short(column):
    """A column's heading in the heatmap: the position ("9" of "9: ' girl'"), "h7" of "head 7",
    or the label itself ("p-3")."""
    return column.split(":")[0] if ":" in column else column.replace("head ", "h")


def heatmap(rows, columns, values, out):
    """rows down, columns across (headed by `short`), values [rows][columns]."""
    width = max(len(r) for r in rows)
    print(" " * width + " " + "".join(f"{short(c):>{CELL}} " for c in columns).rstrip(), file=out)
    for label, row in zip(rows, values):
        print(f"{label:>{width}} " + "".join(cell(v) + " " for v in row).rstrip(), file=out)


def column_legend(columns, out):
    """The position columns' tokens on one line ("0: 'When'  1: ' Elizabeth'  …"); heads need none."""
    if ":" in columns[0]:
        print("  tokens: " + "  ".join(columns), file=out)


def print_result(r, n_top, out=None):
    out = out or sys.stdout
    a, v = show(r.answer["token"]), show(r.versus["token"])
    print(f"clean     ({len(r.clean_tokens)} tokens): " + " ".join(show(t) for t in r.clean_tokens), file=out)
    print(f"corrupted ({len(r.corrupted_tokens)} tokens): " + " ".join(show(t) for t in r.corrupted_tokens),
          file=out)
    print(f"\nLD = logit({a}) − logit({v}) at position {r.position} ({show(r.corrupted_tokens[r.position])}):",
          file=out)
    print(f"  clean run      LD = {r.ld_clean:.4f}   → normalised 1", file=out)
    print(f"  corrupted run  LD = {r.ld_corrupted:.4f}   → normalised 0", file=out)
    print("  normalised = (LD_patched − LD_corrupted) / (LD_clean − LD_corrupted): 1 = the patch "
          "restores the clean answer, 0 = no effect; beyond [0, 1]: overshoot ('>') or the other "
          "way ('<')", file=out)
    for g in r.grids.values():
        across = "heads" if g.columns[0].startswith("head") else "positions"
        print(f"\n{g.site}: {g.name} patched, {'layers' if g.rows[0].startswith('layer') else 'head'} "
              f"down, {across} across (normalised; shade ' ' 0 … '█' 1)", file=out)
        column_legend(g.columns, out)
        heatmap([r_.replace("layer ", "L") for r_ in g.rows], g.columns, g.normalized.tolist(), out)
    print(f"\nthe {n_top} cells that restore most:", file=out)
    print(f"  {'site':<11} {'row':<9} {'column':<28} {'normalised':>10} {'LD':>9}", file=out)
    for c in r.top(n_top):
        print(f"  {c['site']:<11} {c['row']:<9} {c['column']:<28} {c['normalized']:>10.4f} {c['ld']:>9.4f}",
              file=out)


def print_pairs(r, n_top, out=None):
    out = out or sys.stdout
    ds = [p["ld_clean"] - p["ld_corrupted"] for p in r["per_pair"]]
    print(f"pairs: {r['pairs']} patched, {len(r['bad'])} skipped "
          f"(LD_clean − LD_corrupted from {min(ds):.4f} to {max(ds):.4f})", file=out)
    print(f"mean normalised effect over pairs (0 = corrupted, 1 = clean); interval: {r['interval']}",
          file=out)
    cells = []
    for site, s in r["sites"].items():
        positions = not s["columns"][0].startswith("head")
        print(f"\n{site}: mean over pairs, {'layers' if s['rows'][0].startswith('layer') else 'head'} down, "
              + ("positions across, counted from the read position p" if positions else "heads across"),
              file=out)
        heatmap([row.replace("layer ", "L") for row in s["rows"]], s["columns"], s["mean"], out)
        cells += [(s["mean"][i][j], site, row, col, s["low"][i][j], s["high"][i][j], s["n"][i][j])
                  for i, row in enumerate(s["rows"]) for j, col in enumerate(s["columns"])
                  if s["mean"][i][j] is not None]
    several = [c for c in cells if c[-1] >= 2]      # a cell of one pair has no interval: ranked last
    print(f"\nthe {n_top} cells with the largest mean" + (" (of those with two pairs or more)" if several
                                                        and len(several) < len(cells) else "") + ":", file=out)
    print(f"  {'site':<11} {'row':<9} {'column':<8} {'mean':>8}  {'95% interval':<20} pairs", file=out)
    for mean, site, row, col, low, high, n in sorted(several or cells, key=lambda c: -c[0])[:n_top]:
        iv = f"[{low:.4f}, {high:.4f}]" if low is not None else "[—]"
        print(f"  {site:<11} {row:<9} {col:<8} {mean:>8.4f}  {iv:<20} {n}", file=out)


# -- the command ---------------------------------------------------------------------------------
def example_hint(model):
    pair = examples_for(model)["pair"]
    if not pair:
        return 'e.g. patch "The cat sat" "The dog sat" --answer " on" --versus " down"'
    return (f"e.g. the model's own pair: patch {pair['clean']!r} {pair['corrupted']!r} --answer "
            f"{pair['answer']!r} --versus {pair['versus']!r} (or --example)")


def check_args(args, model):
    if args.top < 1:
        raise UsageError(f"--top must be at least 1, got {args.top}.")
    if args.pairs is None:
        for name, value in (("--workers", args.workers), ("--scheduler", args.scheduler),
                            ("--resamples", args.resamples), ("--seed", args.seed)):
            if value is not None:
                raise UsageError(f"{name} goes with --pairs FILE (many pairs); one pair is patched here.")
    if args.pairs is not None and (args.clean is not None or args.example or args.answer or args.versus):
        raise UsageError("--pairs FILE takes every pair, answer and versus from the file: leave out "
                         "CLEAN, CORRUPTED, --example, --answer and --versus.")
    if args.pairs is not None:
        return
    if args.example:
        pair = examples_for(model)["pair"]
        if pair is None:
            raise UsageError(f"{model.info.name} has no example pair: give CLEAN and CORRUPTED.")
        if args.clean is not None:
            raise UsageError("--example takes CLEAN and CORRUPTED from the model's pair: leave them out "
                             "(or leave out --example).")
        args.clean, args.corrupted = pair["clean"], pair["corrupted"]
        args.answer, args.versus = args.answer or pair["answer"], args.versus or pair["versus"]
    if args.clean is None or args.corrupted is None:
        raise UsageError(f"Give CLEAN and CORRUPTED, two texts of as many tokens, and the two tokens: "
                         f"{example_hint(model)}.")
    if args.answer is None or args.versus is None:
        raise UsageError(f"Give --answer and --versus, the two tokens whose logits are compared: "
                         f"{example_hint(model)}.")
    pair = examples_for(model)["pair"]
    hint = (f", e.g. --answer {pair['answer']!r} --versus {pair['versus']!r} as in the model's own pair"
            if pair else ", e.g. ' big'")
    for token in (args.answer, args.versus):
        model.token_id(token, hint=hint)


def patch_command(argv):
    """`python -m gpt2np patch ...`: 0 done, 130 interrupted; user errors (GPT2npError) reach
    cli.main (exit 2)."""
    args = build_parser().parse_args(argv)
    model = load(args.model, engine=args.engine)
    check_args(args, model)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    bar = ProgressBar("pair" if args.pairs else "run", visible=args.progress or sys.stderr.isatty())
    try:
        if args.pairs:
            good, bad = read_pairs(args.pairs)
            r = patch_pairs(args.model, good, sites=sites, position=args.position, head=args.head,
                            bos=args.bos, workers=N_CORES if args.workers is None else args.workers,
                            scheduler=args.scheduler, bad=bad, seed=args.seed or 0,
                            resamples=RESAMPLES if args.resamples is None else args.resamples,
                            progress=bar, engine=args.engine)
        else:
            r = patch(model, args.clean, args.corrupted, args.answer, args.versus, sites=sites,
                      position=args.position, head=args.head, bos=args.bos,
                      progress=bar)
    except KeyboardInterrupt:
        bar.close()
        unit = "pairs" if args.pairs else "patched runs"
        print(f"gpt2np patch: interrupted after {bar.done} {unit}; nothing was printed. Run the same "
              "command again to start over.", file=sys.stderr)
        return 130
    finally:
        bar.close()
    if args.pairs:
        for b in r["bad"]:
            print(f"gpt2np patch: {args.pairs}, line {b['line']}: skipped: {b['reason']}", file=sys.stderr)
    info = {"model": model.info.name, "engine": model.engine}
    if args.json:
        data = {**info, **r} if args.pairs else {**info, **r.to_dict(), "top": r.top(args.top)}
        print(json.dumps(data, ensure_ascii=False))
        return 0
    print(f"model: {model.info.describe()} — engine: {model.engine}")
    if args.pairs:
        print_pairs(r, args.top)
        where = f"Dask cluster {args.scheduler}" if args.scheduler else "this machine"
        print(f"\n{r['pairs']} pairs in {r['run']['seconds']:.1f} s with {r['run']['workers']} "
              f"worker{'s' * (r['run']['workers'] != 1)} on {where}")
    else:
        print_result(r, args.top)
    return 0
