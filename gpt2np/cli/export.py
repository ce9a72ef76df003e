"""Command line of `python -m gpt2np export`: one run of the viewer as one HTML file.

    python -m gpt2np export "sentence" --html out.html [--model NAME|DIR] [--layers 0-3]
        [--heads 0,5] [--qk 5.1,5.5|all|none] [--values 5.1|all|none] [--max-mb 50]
        [--layer L --head H] [--query Q]

Parsing and printing only: the page is made by gpt2np.save_html (viewer/export/). The file
opens from disk in a browser with no server and no network; it says what it holds.
"""

import argparse

from ..api import load
from ..html import page_builder, save_html
from .options import UsageError, add_bos_option, add_engine_option, add_model_option, add_text_argument, read_stdin


def build_parser():
    pages = page_builder()            # the viewer's page builder, through the one seam (gpt2np/html.py)
    DEFAULT_MAX_MB, SMALL_MB = pages.DEFAULT_MAX_MB, pages.SMALL_MB
    p = argparse.ArgumentParser(
        prog="gpt2np export",
        description="Run a sentence and save the viewer's page for it as one HTML file that opens "
                    "from disk: heatmaps of every head, top-5 keys, the Q·K panel and ledger, all heads.")
    add_text_argument(p, "the sentence to run")
    p.add_argument("--html", required=True, metavar="FILE.html", help="the file to write")
    add_model_option(p)
    p.add_argument("--layer", type=int, default=0, help="the layer the page opens at (default 0)")
    p.add_argument("--head", type=int, default=0, help="the head the page opens at (default 0)")
    p.add_argument("--query", type=int, help="the query position the page opens at (default: the last token)")
    p.add_argument("--layers", default="all", help="layers whose heatmaps go in: 'all' (default) or e.g. 0-3,7")
    p.add_argument("--heads", default="all",
                   help="heads (of those layers) whose heatmaps go in: 'all' (default) or e.g. 0,5")
    p.add_argument("--qk", default=None, metavar="HEADS|all|none",
                   help="heads whose exact numbers go in (top-5 keys, Q·K panel, ledger), e.g. 5.1,5.5 "
                        f"(default: the opening layer's heads while the file stays within {SMALL_MB} MB)")
    p.add_argument("--values", default=None, metavar="HEADS|all|none",
                   help="heads whose value ledgers go in (v, p·v, z, the write through W_O), e.g. 5.1 "
                        f"(default: the opening head, while the file stays within {SMALL_MB} MB)")
    p.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB,
                   help="size bound of the file in MB; heads that would pass it are left out "
                        f"(default {DEFAULT_MAX_MB})")
    add_bos_option(p, "the tokens")
    add_engine_option(p)
    return p


PAGE_SUFFIXES = (".html", ".htm")       # --html: a name ending in one of these, in any case


def export_command(argv):
    args = build_parser().parse_args(argv)
    text = read_stdin() if args.text == "-" else args.text
    if not args.html.lower().endswith(PAGE_SUFFIXES):
        raise UsageError(f"--html {args.html!r}: give a file name ending in .html or .htm (any case).")
    model = load(args.model, engine=args.engine)
    trace = model.run(text, bos=args.bos)
    saved = save_html(trace, args.html, text=text, bos=args.bos, layer=args.layer, head=args.head,
                      query=args.query, layers=args.layers, heads=args.heads, qk=args.qk,
                      values=args.values, max_mb=args.max_mb)
    print(f"wrote {saved['path']}: {saved['bytes'] / 1e6:.2f} MB — {saved['holds']}")
    return 0
