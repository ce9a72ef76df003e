"""`python -m gpt2np generate TEXT`: continue a text, printing the tokens as they are made.

Argument parsing and printing only; the work is `Model.generate` (gpt2np/generate.py). Every user
error prints one line on stderr and exits with status 2 (through `cli.main`).
"""

import argparse
import json

from ..api import load
from ..generate import SAMPLING_RANGES, check_sampling, checked_prompt, decode, fresh_seed
from .options import (
    UsageError,
    add_bos_option,
    add_engine_option,
    add_model_option,
    add_text_argument,
    read_stdin,
    show,
)

SAMPLING_OPTIONS = tuple(SAMPLING_RANGES)           # temperature, top_k, top_p, seed


def build_parser():
    p = argparse.ArgumentParser(
        prog="gpt2np generate",
        description="Continue a text with GPT-2 (NumPy), one token at a time with a KV cache, "
                    "printing each token as it is made.")
    add_text_argument(p, "the prompt")
    p.add_argument("--tokens", type=int, default=20, help="new tokens at most (default 20)")
    p.add_argument("--temperature", type=float, help="divide the logits by this before softmax "
                   "(default 1; below 1 sharper, above 1 flatter)")
    p.add_argument("--top-k", type=int, help="draw only from the K most likely tokens")
    p.add_argument("--top-p", type=float, help="draw only from the most likely tokens whose "
                   "probabilities reach P, in (0, 1]")
    p.add_argument("--seed", type=int, help="seed of the draws (default: a fresh one, printed)")
    p.add_argument("--greedy", action="store_true", help="take the most likely token every time")
    p.add_argument("--show-steps", action="store_true",
                   help="print each step's table: top candidates, p before and after temperature, "
                        "what survives top-k and top-p, the choice")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON at the end")
    add_model_option(p)
    add_bos_option(p, "the prompt")
    add_engine_option(p)
    return p


def check_options(args):
    """The options' own ranges, before any model is loaded."""
    if args.tokens < 1:
        raise UsageError(f"--tokens must be at least 1, got {args.tokens}.")
    given = {name: getattr(args, name) for name in SAMPLING_OPTIONS if getattr(args, name) is not None}
    if args.greedy and given:
        named = [option(name) for name in given]
        raise UsageError(f"--greedy takes the most likely token every time: {', '.join(named)} "
                         f"{'does' if len(named) == 1 else 'do'} not apply. Drop "
                         f"{'it' if len(named) == 1 else 'them'}, or drop --greedy to sample.")
    check_sampling(given, spelled=option, none=None,
                   greedy_hint="For the most likely token at every step use --greedy.")


def option(name):
    """A setting's name as an option: top_k -> --top-k."""
    return f"--{name.replace('_', '-')}"


class Stream:
    """on_step callback that prints the continuation as it grows; a character whose bytes are
    split across tokens waits for its last byte."""

    def __init__(self, model):
        self.model, self.new_ids, self.printed = model, [], ""

    def __call__(self, step):
        self.new_ids.append(step.chosen.id)
        text = decode(self.model, self.new_ids)
        if not text.endswith("\ufffd"):
            self.write(text)

    def write(self, text):
        print(text[len(self.printed):], end="", flush=True)
        self.printed = text


def running_sum(c):
    """The running Σ column: the sum top-p reads, over what top-k kept; none on a row top-k cut
    (the viewer's sampling ledger shows the same)."""
    return f"{c.running_sum:.4f}" if c.top_k else "—"


def step_table(step, greedy, n_prompt):
    """A step's sampling table, as lines of text."""
    header = (f"  {'rank':>4}  {'token':<18} {'logit':>9} {'p':>8} {'p(temp)':>8}  {'top-k':>5} "
              f"{'running Σ':>9}  {'top-p':>5} {'p(draw)':>8}")
    lines = [f"step {step.position - n_prompt + 1} (position {step.position}):", header]

    def row(c):
        return (f"  {c.rank:>4}  {show(c.token)[:18]:<18} {c.logit:>9.3f} {c.p:>8.4f} "
                f"{c.p_temperature:>8.4f}  {'yes' if c.top_k else 'no':>5} {running_sum(c):>9}  "
                f"{'yes' if c.top_p else 'no':>5} {c.p_draw:>8.4f}")
    lines += [row(c) for c in step.candidates]
    c = step.chosen
    if c.rank > len(step.candidates):
        lines += ["     …", row(c)]
    how = ("the largest logit (greedy)" if greedy else
           f"drawn with p = {c.p_draw:.4f} from {step.n_kept} kept tokens")
    lines.append(f"  → {show(c.token)} (id {c.id}, rank {c.rank}), {how}")
    return lines


def main(argv):
    args = build_parser().parse_args(argv)
    check_options(args)
    text = read_stdin() if args.text == "-" else args.text
    model = load(args.model, engine=args.engine)
    prompt_ids = checked_prompt(model, text, args.bos)
    sampling = {} if args.greedy else {name: getattr(args, name) for name in SAMPLING_OPTIONS
                                       if getattr(args, name) is not None}
    if not args.greedy and args.seed is None:
        sampling["seed"] = fresh_seed()           # printed, so that the run can be repeated

    def generate(on_step=None):
        return model.generate(prompt_ids, args.tokens, greedy=args.greedy, on_step=on_step, **sampling)

    if args.json:
        gen = generate()
        print(json.dumps({"model": {"name": model.info.name, "origin": model.info.origin,
                                    "n_params": model.info.n_params},
                          "engine": model.engine, **gen.to_dict()}, ensure_ascii=False))
        return 0
    print(f"model: {model.info.describe()} — engine: {model.engine}")
    print("greedy: the most likely token at every step" if args.greedy else
          f"sampling: temperature {sampling.get('temperature', 1.0):g}, top-k "
          f"{sampling.get('top_k', 'off')}, top-p {sampling.get('top_p', 'off')}, seed {sampling['seed']}")
    if args.show_steps:
        print(f"prompt ({len(prompt_ids)} tokens): {show(decode(model, prompt_ids))}\n", flush=True)
        gen = generate(lambda step: print("\n".join(step_table(step, args.greedy, len(prompt_ids))) + "\n",
                                         flush=True))
        print(gen.text)
    else:
        print(decode(model, prompt_ids), end="", flush=True)
        stream = Stream(model)
        gen = generate(stream)
        stream.write(gen.new_text)                # what a split character held back, if anything
        print()
    if gen.stop != "max_new_tokens":
        print(f"({gen.note})")
    return 0
