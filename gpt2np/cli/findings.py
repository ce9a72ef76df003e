"""Command line of `python -m gpt2np findings`: parsing and printing only.

    python -m gpt2np findings [--model NAME|DIR] [--sentence TEXT] [--table] [--json]
    python -m gpt2np findings --lens TEXT [--token TOK]
    python -m gpt2np findings --ablate L.H [L.H ...] [--text TEXT] [--mean] [--token TOK]
    python -m gpt2np findings --pair TEXT_A TEXT_B
    python -m gpt2np findings --attribute TEXT [--token TOK] [--versus TOK]

The report prints, for each prediction of the original demo, the measured number next to
"holds" / "does not hold" ("not applicable" when the model lacks the layers a prediction is
about), then every head's type, then — for a model with GPT-2 small's shape — the published roles
of its heads, measured. The numbers come from `gpt2np.analysis.findings` and `gpt2np.analysis.interventions`;
`--json` prints their dicts as they are. User errors reach `cli.main`, which prints one line.
"""

import argparse
import json
import sys

from .. import analysis
from ..analysis import findings, interventions
from ..analysis.examples import pair_hint
from ..analysis.findings import CANDIDATES, COREF_SENTENCE, FLIP_SENTENCE, PROBE_LENGTH, PROBE_SEED, PRONOUN, SENTENCE
from ..api import load
from ..errors import GPT2npError
from .options import add_bos_option, add_engine_option, add_model_option, show

# -- printing ------------------------------------------------------------------------------------
TYPE_STAT = {"induction": "induction", "previous-token": "previous", "self": "self", "sink": "sink",
             "broadcast": "top_column_share", "diffuse": "entropy_norm", "mixed": "entropy_norm"}
SHORT = {"induction": "ind", "previous": "prev", "self": "self", "sink": "sink",
         "top_column_share": "bar", "entropy_norm": "Hn"}


def print_report(r, table=False, out=None):
    p = lambda *a: print(*a, file=out or sys.stdout)  # noqa: E731
    m = r["model"]
    p(f"model: {m['name']} — {m['n_layer']} layers × {m['n_head']} heads — {m['n_params'] / 1e6:.1f}M "
      f"parameters — {m['origin']} — engine: {m.get('engine', '?')}")
    inp = r["inputs"]
    p(f"sentence ({len(inp['sentence']['tokens'])} tokens): {inp['sentence']['text']}")
    p(f"induction probe: {inp['probe']['length']} random tokens × 2 after <|endoftext|> "
      f"(seed {inp['probe']['seed']})")
    p("\nPredictions of the original demo, measured on this model:")
    for pr in r["predictions"]:
        p(f"  {pr['id']}. [{pr['verdict']}] {pr['prediction']}")
        p(f"     {pr['summary']}")
        if pr["id"] == 4:
            for t in pr["measured"]["sentences"]:
                p(f"     query {show(t['query_token'])} (position {t['query']}), referent "
                  f"{t['referent']!r}, in: {t['text']}")
                p("     head   top key (with position 0)    top key (without position 0)   "
                  + "  ".join(f"{x:>9.9}" for x in (t["referent"], t["other"])) + "  margin")
                for h in t["heads"]:
                    p(f"     {h['head']:<6} {show(h['top_key_token']):>14} {h['top_weight']:.3f}"
                      f"           {show(h['top_key_no0_token']):>14} {h['top_weight_no0']:.3f}      "
                      + "  ".join(f"{w:9.3f}" for w in h["candidates"]) + f"  {h['margin']:+.3f}")
    p("\nHead types (statistics over the sentence; induction over the probe):")
    for t in r["type_rules"]:
        p(f"  {t:<15} {r['type_rules'][t]}")
    p("  (head index, with the statistic that decided its type)")
    for layer in r["types_by_layer"]:
        rows = [h for h in r["heads"] if h["layer"] == layer["layer"]]
        groups = []
        for t in analysis.HEAD_TYPES:
            members = [h for h in rows if h["type"] == t]
            if members:
                stat = TYPE_STAT[t]
                groups.append(f"{t} " + " ".join(
                    f"{h['index']}" if t in ("diffuse", "mixed") else
                    f"{h['index']} ({SHORT[stat]} {h[stat]:.2f})" for h in members))
        p(f"  layer {layer['layer']:>2}: " + " | ".join(groups))
    sinks = [h for h in r["heads"] if h["type"] == "sink"]
    if sinks:
        p("  sink heads: weight on position 0 vs its share of value-weighted attention "
          "(‖α·v·W_O‖; small = little moved): " + ", ".join(
              f"{h['head']} {h['sink']:.2f}/{h['vw_sink_share']:.2f}" for h in sinks))
    if table:
        p("\n  head  type            entropy  Hn    sink  prev  self  top column (share)      "
          "vw_sink  induction")
        for h in r["heads"]:
            p(f"  {h['head']:<5} {h['type']:<15} {h['entropy']:6.2f}  {h['entropy_norm']:.2f}  "
              f"{h['sink']:.2f}  {h['previous']:.2f}  {h['self']:.2f}  "
              f"{h['top_column']:>3} {show(h['top_column_token'])[:12]:<12} ({h['top_column_share']:.2f})"
              f"  {h['vw_sink_share']:.2f}     {h['induction']:.2f}")
    roles = r["published_roles"]
    p("\nPublished head roles of GPT-2 small:")
    if not roles["applicable"]:
        p(f"  {roles['note']}")
    for role in roles["roles"]:
        p(f"  {role['role']} — {role['source']}")
        for e in role["heads"]:
            p(f"    {e['head']:<6} [{e['verdict']}] {e['measure']}: {e['value']:.3f}"
              + (f" (vs {e['subject']:.3f})" if "subject" in e else "") + f"; type {e['type']}")
    return 0


def print_lens(lens, out=None):
    out = out or sys.stdout
    t = lens["target"]
    print(f"logit lens at position {lens['position']} {show(lens['token'])}; following "
          f"{show(t['token'])} (id {t['id']})", file=out)
    for s in lens["streams"]:
        top = "  ".join(f"{show(x['token'])} {x['p']:.3f}" for x in s["top"])
        print(f"  {s['label']:<15} {show(t['token'])} p={s['target_p']:.4f} rank {s['target_rank']:<6} "
              f"top: {top}", file=out)


def print_ablation(a, out=None):
    out = out or sys.stdout
    print(f"{a['mode']}-ablation of heads {', '.join(a['heads'])}; next token after "
          f"{show(a['after_token'])} (position {a['position']}):", file=out)
    print("  token                 p before  p after   change   rank before → after", file=out)
    rows = a["changes"] + ([a["token"]] if a["token"] and a["token"]["id"] not in
                           [c["id"] for c in a["changes"]] else [])
    for c in rows:
        mark = " (chosen)" if a["token"] and c["id"] == a["token"]["id"] else ""
        print(f"  {show(c['token']):<20} {c['p_before']:9.4f} {c['p_after']:9.4f} {c['delta']:+9.4f}"
              f"   {c['rank_before']:>5} → {c['rank_after']}{mark}", file=out)
    print(f"  top-1 {'changed' if a['top1_changed'] else 'unchanged'}: {show(a['before'][0]['token'])}"
          f" → {show(a['after'][0]['token'])}", file=out)


def print_pair(pair, k=10, out=None):
    out = out or sys.stdout
    al = pair["alignment"]
    print(al["note"], file=out)
    if al["mode"] != "positional":
        # Different token counts: both tokenizations and the alignment, before any number.
        for side in ("a", "b"):
            s = pair[side]
            print(f"  {side} ({len(s['tokens'])} tokens): "
                  + " ".join(f"{i}:{show(t)}" for i, t in enumerate(s["tokens"])), file=out)
        print("  aligned (a ↔ b): " + " ".join(f"{i}↔{j}" for i, j in al["pairs"]), file=out)
        for side in ("a", "b"):
            alone = al[f"unaligned_{side}"]
            print(f"  only in {side}: " + (" ".join(f"{i}:{show(pair[side]['tokens'][i])}" for i in alone)
                                           or "none"), file=out)
    for side in ("a", "b"):
        s = pair[side]
        print(f"{side}: {' '.join(show(t) for t in s['tokens'])}   next: "
              + ", ".join(f"{show(x['token'])} {x['p']:.3f}" for x in s["next"]), file=out)
    print(f"queries from position {al['first_difference']} on are scored", file=out)
    print(f"heads by attention change (mean total variation distance; top {k}):", file=out)
    for h in pair["heads"][:k]:
        print(f"  {h['head']:<6} mean {h['mean_change']:.3f}  max {h['max_change']:.3f} at query "
              f"{h['max_query_a']} {show(h['max_query_token'])}", file=out)


def print_attribution(a, rows=12, out=None):
    out = out or sys.stdout
    t, v = a["target"], a["versus"]
    what = f"logit({show(t['token'])})" + (f" − logit({show(v['token'])})" if v else "")
    print(f"direct logit attribution at position {a['position']} {show(a['token'])}: {what}", file=out)
    print(f"  the model's logit {a['logit']:+.6f}; the parts sum to {a['sum']:+.6f} "
          f"(|Δ| {a['abs_diff']:.1e}, relative {a['relative']:.1e}); final LayerNorm scale frozen at "
          f"{a['ln_final_scale']:.6g}", file=out)
    parts = sorted(a["parts"], key=lambda p: -abs(p["value"]))
    print(f"  {rows} largest parts of {len(parts)} (heads L.H, MLPs, embeddings, biases), with the tokens "
          "each pushes up / down most:", file=out)
    for p in parts[:rows]:
        up = " ".join(show(x["token"]) for x in p["up"])
        down = " ".join(show(x["token"]) for x in p["down"])
        print(f"  {p['name']:<14} {p['value']:+9.4f}   up: {up}   down: {down}", file=out)
    rest = parts[rows:]
    if rest:
        print(f"  {len(rest)} other parts: {sum(p['value'] for p in rest):+9.4f} together", file=out)


# -- parsing ----------------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(
        prog="gpt2np findings",
        description="Check the original demo's predictions about attention on a model, with the "
                    "measured numbers; or run one tool: --lens, --ablate, --pair, --attribute.")
    add_model_option(p)
    p.add_argument("--sentence", default=SENTENCE, help="text for the per-head statistics")
    p.add_argument("--coref-sentence", default=COREF_SENTENCE,
                   help="text for prediction 4 whose referent is the first candidate")
    p.add_argument("--flip-sentence", default=None,
                   help="prediction 4's second text, whose referent is the second candidate (default: "
                        "the 'too small.' sentence with the default --coref-sentence, else none)")
    p.add_argument("--pronoun", default=PRONOUN, help=f"query word of prediction 4 (default {PRONOUN})")
    p.add_argument("--candidates", nargs=2, default=CANDIDATES, metavar=("REFERENT", "OTHER"),
                   help="the two words prediction 4 compares (default: trophy suitcase)")
    add_bos_option(p, "every text")
    add_engine_option(p)
    p.add_argument("--probe-length", type=int, default=PROBE_LENGTH,
                   help=f"random tokens per copy in the induction probe (default {PROBE_LENGTH})")
    p.add_argument("--seed", type=int, default=PROBE_SEED, help="seed of the induction probe")
    p.add_argument("--table", action="store_true", help="also print every head's statistics")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    tool = p.add_mutually_exclusive_group()
    tool.add_argument("--lens", metavar="TEXT", help="logit lens: top tokens after every layer")
    tool.add_argument("--ablate", nargs="+", metavar="L.H", help="ablate these heads, as LAYER.HEAD")
    tool.add_argument("--pair", nargs=2, metavar=("TEXT_A", "TEXT_B"),
                      help="minimal pair: heads ranked by how much their attention changes")
    tool.add_argument("--attribute", metavar="TEXT",
                      help="direct logit attribution at the last position: the next-token logit "
                           "split into every head, MLP, embedding and bias")
    p.add_argument("--text", default=COREF_SENTENCE, help="input of --ablate (default: prediction 4's)")
    p.add_argument("--mean", action="store_true", help="--ablate: mean-ablation instead of zero")
    p.add_argument("--token", help="--ablate / --lens: a token whose probability to follow; "
                                   "--attribute: the token whose logit to split (default: the top-1)")
    p.add_argument("--versus", metavar="TOK", help="--attribute: split logit(--token) − logit(TOK)")
    p.add_argument("--top-k", type=int, default=5, help="tokens listed by --lens / --ablate")
    return p


def findings_command(argv):
    """`python -m gpt2np findings ...`: the report, or one tool; prints text or --json."""
    args = build_parser().parse_args(argv)
    model = load(args.model, engine=args.engine)
    if args.top_k < 1:
        raise GPT2npError(f"--top-k must be at least 1, got {args.top_k}.")
    if args.versus is not None and args.attribute is None:
        raise GPT2npError(f"--versus goes with --attribute: e.g. --attribute TEXT {pair_hint(model)}.")
    if args.lens is not None:
        result = interventions.logit_lens(model, model.run(args.lens, bos=args.bos), k=args.top_k,
                                          target=args.token)
        printer = print_lens
    elif args.ablate:
        result = interventions.ablate(model, args.text, args.ablate, "mean" if args.mean else "zero",
                                      token=args.token, k=args.top_k, bos=args.bos)
        printer = print_ablation
    elif args.attribute is not None:
        result = interventions.logit_attribution(model, model.run(args.attribute, bos=args.bos), -1,
                                                 args.token, args.versus, k=args.top_k)
        printer = print_attribution
    elif args.pair:
        result = interventions.minimal_pair(model, *args.pair, bos=args.bos, k=args.top_k)
        printer = print_pair
    else:
        result = findings.report(model, args.sentence, args.coref_sentence, args.pronoun,
                                 tuple(args.candidates), args.bos, args.probe_length, args.seed,
                                 flip_sentence=args.flip_sentence or (FLIP_SENTENCE if args.coref_sentence
                                                                      == COREF_SENTENCE else None))
        printer = lambda r: print_report(r, table=args.table)  # noqa: E731
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        printer(result)
    return 0
