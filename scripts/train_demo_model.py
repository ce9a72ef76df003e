#!/usr/bin/env python3
"""Train the small demo model bundled with gpt2np (in `gpt2np/demo/`).

The demo model is NOT GPT-2. It is a small GPT-2-shaped transformer (6 layers, 8 heads, n_embd 128,
context 256) with GPT-2's own tokenizer (the 50,257-token byte-level BPE, so any sentence gives the
same tokens under `--model demo` and `--model gpt2`), trained from scratch on the six novels of
Jane Austen, so that gpt2np works with no download and its viewer has learned attention to show: a
previous-token head, an induction head, heads that park their attention on position 0.

Step by step:
  1. Corpus (`demo_corpus.py`): Debian's r-cran-janeaustenr (public-domain novels); every chapter
     a document, every 25th chapter held out.
  2. Tokens: GPT-2's tokenizer (tests/data/gpt2/tokenizer.json, copied into the output). Austen
     uses a small part of GPT-2's vocabulary, so training restricts the softmax to the tokens that
     occur in the training chapters, plus one shared row that stands for every other token: its
     logit gets + log(number of unseen tokens), which makes the training loss exactly the loss of
     the saved full-vocabulary model, whose unseen tokens' rows all hold that one shared row.
  3. Model: `transformers.GPT2LMHeadModel`, PyTorch on the CPU, AdamW with warm-up and cosine
     decay, fixed seed. Each step: 16 windows of 64 tokens and 4 of 256. Repeats are put in on
     purpose, because they make induction heads form quickly: in 4 of the short windows the
     second half repeats the first (text), in 4 more a random-token half is repeated, and in 1
     long window a random-token span (8-64 tokens) is repeated at a random place. The first copy
     of random tokens is not scored (nothing can predict it). With `--set sentence_starts=100`
     every window begins at a sentence or paragraph start, as the sentences the viewer shows do
     (the shipped model's last phase; it made a head park on position 0 there).
  4. Checkpoints every few minutes (`--work DIR`); `--resume` continues from the last one and
     gives the same numbers as an uninterrupted run (batches come from a saved generator state).
  5. Evaluation on held-out text (the F16 file as saved, reloaded): loss against a unigram model,
     gpt2np's own head statistics and types (`gpt2np.analysis`), the induction score on repeated
     random tokens, the loss on the first and second copy, the model's own example sentences.
  6. Output (the official GPT-2 layout): config.json, model.safetensors (F16), tokenizer.json,
     training.json (the card: every setting and measurement) and README.md.

Usage:
    python scripts/train_demo_model.py --work /work/demo-train --train-only   # train (resumable)
    python scripts/train_demo_model.py --work /work/demo-train --resume       # continue, then evaluate and save
    python scripts/train_demo_model.py --quick          # a tiny smoke run into a temporary directory
    python scripts/train_demo_model.py --heldout-text austen-heldout.txt      # the held-out chapters
Needs the test extra (torch CPU, transformers); apt-get for the corpus.
"""

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_corpus

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_OUT = REPO / "gpt2np" / "demo"
GPT2_TOKENIZER = REPO / "tests" / "data" / "gpt2" / "tokenizer.json"
EOT = "<|endoftext|>"
MAX_WEIGHTS = 20 * 1000 * 1000     # model.safetensors must stay <= 20 MB

MODEL = dict(n_layer=6, n_head=8, n_embd=128, n_positions=256, vocab_size=50257)
TRAIN = dict(steps=2000, short=(64, 16), long=(256, 4), repeat_text=4, repeat_random=4,
             long_random=1, long_span=4, repeat_spans="random", random_pool=2000, synthetic_steps=0,
             sentence_starts=0,
             lr=2e-3, min_lr=1e-4, warmup=200, weight_decay=0.1,
             betas=(0.9, 0.95), grad_clip=1.0, eval_every=250, checkpoint_minutes=3.0)
QUICK = dict(steps=30, eval_every=10)
TINY = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64)        # --tiny: for the resume test
TINY_TRAIN = dict(short=(16, 4), long=(64, 1), repeat_text=1, repeat_random=1, long_random=1,
                  eval_every=10 ** 9)
# what a checkpoint written before these settings existed ran with
ADDED_LATER = dict(synthetic_steps=0, repeat_spans="half", long_span=4, sentence_starts=0)
TARGETS = dict(prev_token=0.5, first_position=0.3, induction=0.3)


def log(msg=""):
    print(msg, flush=True)


def need_torch():
    """torch, transformers - or one line saying which extra to install."""
    try:
        import torch
        import transformers
    except ImportError as e:
        sys.exit(f"train_demo_model.py needs torch and transformers ({e.name} is missing): "
                 "pip install 'gpt2np[test]'")
    return torch, transformers


# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------

def gpt2_tokenizer():
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(GPT2_TOKENIZER))


def sentence_starts(tok, ids):
    """Positions in ids where a sentence or paragraph begins: the first token, a token after
    <|endoftext|>, and a token that begins with a capital letter or an opening quote after one
    that ends a sentence (. ! ? before any closing quotes; not the full stop of "Mr.") or a line.
    -> [n] int64, ascending"""
    eot = tok.token_to_id(EOT)
    text = [tok.decode([i]) for i in range(tok.get_vocab_size())]
    ends = np.array([t.rstrip("\"'”’ ").endswith((".", "!", "?")) or t.endswith("\n")
                     for t in text])                                   # [V]
    begins = np.array([t.lstrip()[:1].isupper() or (t.lstrip()[:1] or "x") in "\"'“‘_"
                       for t in text])                                 # [V]
    title = np.array([t.strip() in ("Mr", "Mrs", "Dr", "St", "Col", "Capt") for t in text])  # "Mr. Weston"
    after = (ids[:-1] == eot) | (ends[ids[:-1]] & begins[ids[1:]])     # [N-1]: a start at p + 1
    after[1:] &= ~title[ids[:-2]]
    return np.concatenate([[0], 1 + np.flatnonzero(after)]).astype(np.int64)


def encode_documents(tok, texts):
    """One stream of GPT-2 ids: every document followed by <|endoftext|> (as GPT-2 was trained)."""
    eot = tok.token_to_id(EOT)
    ids = []
    for enc in tok.encode_batch(texts):
        ids.extend(enc.ids)
        ids.append(eot)
    return np.array(ids, dtype=np.int64)


class Vocab:
    """The tokens the softmax is restricted to in training: those of the training chapters.

    Compact id i < n_seen is GPT-2 id seen[i]; every other GPT-2 id maps to compact id n_seen, the
    one shared row. Its logit gets + log(n_unseen) in training, so the softmax over compact ids
    equals the full softmax of a 50,257-row model whose unseen rows all equal the shared row."""

    def __init__(self, train_ids, vocab_size):
        self.seen, self.counts = np.unique(train_ids, return_counts=True)   # [n_seen] GPT-2 ids
        self.vocab_size = vocab_size
        self.n_seen = len(self.seen)
        self.n_unseen = vocab_size - self.n_seen
        self.compact = np.full(vocab_size, self.n_seen, dtype=np.int64)
        self.compact[self.seen] = np.arange(self.n_seen)

    def frequent(self, k, leave_out=()):
        """Compact ids of the k most frequent training tokens (ties: lower GPT-2 id first),
        without the GPT-2 ids in leave_out. -> [k] sorted"""
        order = np.argsort(-self.counts, kind="stable")                # compact ids, most frequent first
        order = order[~np.isin(self.seen[order], list(leave_out))]
        return np.sort(order[:k])

    def offset(self):
        """[n_seen + 1] added to the compact logits: 0, and log(n_unseen) for the shared row."""
        import torch
        off = torch.zeros(self.n_seen + 1)
        off[-1] = math.log(self.n_unseen) if self.n_unseen else -math.inf
        return off


# ---------------------------------------------------------------------------------------------
# Model and training
# ---------------------------------------------------------------------------------------------

def make_config(vocab_size, eot_id, shape):
    from transformers import GPT2Config
    return GPT2Config(activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                      attn_pdrop=0.0, layer_norm_epsilon=1e-5, initializer_range=0.02,
                      bos_token_id=eot_id, eos_token_id=eot_id, n_ctx=shape["n_positions"],
                      tie_word_embeddings=True, n_layer=shape["n_layer"], n_head=shape["n_head"],
                      n_embd=shape["n_embd"], n_positions=shape["n_positions"],
                      vocab_size=vocab_size)


def init_position_embeddings(model, std=0.08):
    """Start wpe from sinusoids scaled to `std` (then trained like every other weight), with
    frequencies from pi (a sign flip every token) down to one cycle per context: position i-1 is
    a clearly distinct rotation of position i, so a previous-token head can form early."""
    import torch
    n_pos, d = model.transformer.wpe.weight.shape
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    k = torch.arange(d // 2, dtype=torch.float64)
    freq = math.pi * (2.0 / n_pos) ** (k / (d // 2 - 1))
    pe = torch.zeros(n_pos, d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    pe *= std / pe.std().item()
    with torch.no_grad():
        model.transformer.wpe.weight.copy_(pe.float())


def lr_at(step, hp):
    """Linear warm-up, then cosine decay from lr to min_lr."""
    if step < hp["warmup"]:
        return hp["lr"] * (step + 1) / hp["warmup"]
    t = (step - hp["warmup"]) / max(1, hp["steps"] - hp["warmup"])
    return hp["min_lr"] + 0.5 * (hp["lr"] - hp["min_lr"]) * (1 + math.cos(math.pi * t))


def make_optimizer(model, hp):
    import torch

    def decayed(name, p):      # weight matrices; not embeddings, biases, LayerNorm gains
        return p.dim() >= 2 and not name.endswith(("wte.weight", "wpe.weight"))
    decay = [p for n, p in model.named_parameters() if decayed(n, p)]
    no_decay = [p for n, p in model.named_parameters() if not decayed(n, p)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=hp["lr"], betas=hp["betas"])


def make_batch(stream, hp, gen, pool, synthetic=False, starts_at=None):
    """One step's windows as [(input ids, labels)] (compact ids; label -100 = not scored).

    Short windows: in the first repeat_text a span of the text is repeated right after itself;
    in the next repeat_random a span of random tokens is, its first copy not scored. Long windows:
    the first long_random get a random-token span of 8 to T/long_span tokens, repeated right after
    itself.
    Spans start at a random place and have a random length (8 to T/2 tokens in short windows), so
    that the distance back to the earlier copy differs from window to window and only attention
    by content (an induction head) can find it; with repeat_spans "half" (the first runs) a short
    window's second half repeated its first, always 32 tokens back. Random tokens are drawn from
    pool (compact ids: the random_pool most frequent training tokens, whose embeddings are trained
    well enough to tell apart). synthetic (the first synthetic_steps steps): every short window
    holds a repeated random span and every long window one too. sentence_starts (a percentage):
    that share of the windows of each size begins at a sentence or paragraph start (starts_at,
    positions in stream), as the sentences the viewer shows do; the others anywhere."""
    import torch

    def random_tokens(*size):
        return pool[torch.randint(0, len(pool), size, generator=gen)]

    def randint(lo, hi):                     # lo..hi inclusive
        return int(torch.randint(lo, hi + 1, (1,), generator=gen))

    def repeat_span(x, unscored, r, max_len, random):
        T = x.shape[1]
        L = randint(8, max_len)
        s = randint(0, T - 2 * L)
        if random:
            x[r, s:s + L] = random_tokens(L)
            unscored[r, s:s + L] = True
        x[r, s + L:s + 2 * L] = x[r, s:s + L]
    out = []
    (ts, ns), (tl, nl) = hp["short"], hp["long"]
    for T, n in ((ts, ns), (tl, nl)):
        starts = torch.randint(0, len(stream) - T, (n,), generator=gen)
        k = round(n * hp["sentence_starts"] / 100)
        if k:
            fits = starts_at[starts_at < len(stream) - T]
            starts[:k] = fits[torch.randint(0, len(fits), (k,), generator=gen)]
        x = torch.stack([stream[s:s + T] for s in starts.tolist()])
        unscored = torch.zeros_like(x, dtype=torch.bool)
        if T == ts:
            a, b = hp["repeat_text"], hp["repeat_text"] + hp["repeat_random"]
            if synthetic:
                a, b = 0, n
            if hp["repeat_spans"] == "half":
                half = T // 2
                x[a:b, :half] = random_tokens(b - a, half)
                x[:b, half:2 * half] = x[:b, :half]
                unscored[a:b, :half] = True
            else:
                for r in range(b):
                    repeat_span(x, unscored, r, T // 2, random=r >= a)
        else:
            for r in range(n if synthetic else hp["long_random"]):
                repeat_span(x, unscored, r, T // hp["long_span"], random=True)
        out.append((x, x.masked_fill(unscored, -100)))
    return out


def batch_loss(model, parts, offset):
    """Mean cross-entropy (nats) over every scored next-token prediction of the step."""
    import torch.nn.functional as F
    total, count = 0.0, 0
    for x, y in parts:
        logits = model(input_ids=x).logits[:, :-1] + offset                 # [n, T-1, n_seen+1]
        target = y[:, 1:].reshape(-1)
        total = total + F.cross_entropy(logits.reshape(-1, logits.size(-1)), target,
                                        ignore_index=-100, reduction="sum")
        count += int((target != -100).sum())
    return total / count


def save_checkpoint(path, state):
    import torch
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(model, stream, hp, seed, vocab, work, settings, probe, stop_at=None, new_steps=False,
          evaluate=False, starts_at=None):
    """AdamW on random windows; a checkpoint every checkpoint_minutes and at the end (or at
    stop_at). Resumes from work/checkpoint.pt when it exists and its settings match.
    -> the training record (wall and CPU time over all sittings, probe log)."""
    import torch
    ckpt = work / "checkpoint.pt"
    gen = torch.Generator().manual_seed(seed)
    opt = make_optimizer(model, hp)
    offset = vocab.offset()
    pool = torch.from_numpy(random_pool(vocab, hp))
    record = {"step": 0, "wall_s": 0.0, "cpu_s": 0.0, "sittings": 0, "probes": []}
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        saved = state["settings"]
        saved["hp"] = {**ADDED_LATER, **saved["hp"]}  # settings a checkpoint may predate
        if new_steps:                                # warm-up as it was
            hp["warmup"] = settings["hp"]["warmup"] = saved["hp"]["warmup"]
        if new_steps and saved["hp"]["steps"] != hp["steps"]:
            # a new length of the run (the cosine decay is stretched or shortened from here on).
            # The card records the change.
            saved = dict(saved, hp=dict(saved["hp"], steps=hp["steps"]))
            change = {"at_step": state["record"]["step"], "from": state["settings"]["hp"]["steps"],
                      "to": hp["steps"]}
            state["record"].setdefault("plan_changes", []).append(change)
            log(f"the run's length changes: {change}")
        if saved != settings and not evaluate:   # evaluating: the checkpoint's settings, whatever they are
            sys.exit(f"{ckpt} was written with other settings; remove it or use another --work.\n"
                     f"checkpoint: {state['settings']}\nnow:        {settings}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        record = state["record"]
        settings.update(saved)
        hp.update(saved["hp"])
        log(f"resumed from {ckpt} at step {record['step']}")
    end = hp["steps"] if stop_at is None else min(stop_at, hp["steps"])
    if end <= record["step"]:                        # nothing to train: evaluate as it is
        model.eval()
        return record
    smooth = record.get("smooth")
    record["sittings"] += 1
    wall0, cpu0 = time.time() - record["wall_s"], time.process_time() - record["cpu_s"]
    last_save = time.time()

    def checkpoint():
        record.update(wall_s=round(time.time() - wall0, 1), cpu_s=round(time.process_time() - cpu0, 1),
                      smooth=smooth)
        save_checkpoint(ckpt, {"model": model.state_dict(), "opt": opt.state_dict(),
                               "gen": gen.get_state(), "settings": settings, "record": record})

    model.train()
    for step in range(record["step"], end):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, hp)
        loss = batch_loss(model, make_batch(stream, hp, gen, pool, synthetic=step < hp["synthetic_steps"],
                                           starts_at=starts_at), offset)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp["grad_clip"])
        opt.step()
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        done = record["step"] = step + 1
        if done % 20 == 0 or done == hp["steps"]:
            el = time.time() - wall0
            log(f"step {done:5d}/{hp['steps']}  loss {loss.item():.3f} (smoothed {smooth:.3f})  "
                f"lr {lr_at(step, hp):.2e}  {el:6.0f}s  cpu {time.process_time() - cpu0:6.0f}s")
        if done % hp["eval_every"] == 0 and done < hp["steps"]:
            line = probe(model)
            record["probes"].append(dict(line, step=done))
            log(f"      probe at step {done}: {line}")
            model.train()
        if time.time() - last_save > 60 * hp["checkpoint_minutes"]:
            checkpoint()
            last_save = time.time()
    checkpoint()
    model.eval()
    log(f"checkpoint at step {record['step']}: {ckpt}")
    return record


# ---------------------------------------------------------------------------------------------
# The in-training probe (compact model, torch)
# ---------------------------------------------------------------------------------------------

def random_pool(vocab, hp):
    """Compact ids random-token spans and the induction probe draw from: the random_pool most
    frequent training tokens, <|endoftext|> left out."""
    return vocab.frequent(hp["random_pool"], leave_out=[vocab.vocab_size - 1])


def probe_fn(vocab, held_compact, sentences_compact, n_positions, hp):
    """model -> {held-out loss, best previous-token / position-0 / induction head and value}."""
    import torch

    from gpt2np import analysis
    wins = torch.from_numpy(windows(held_compact, n_positions)[:16])
    bos = int(vocab.compact[vocab.vocab_size - 1])                  # <|endoftext|>
    pool = random_pool(vocab, hp)
    n = min(50, len(pool), (n_positions - 1) // 2)
    seq = np.random.default_rng(0).choice(pool, n, replace=False)
    probe_ids = torch.tensor([[bos, *seq, *seq]])

    def patterns(model, x):
        out = model(input_ids=x, output_attentions=True).attentions
        return np.stack([a[0].double().numpy() for a in out])           # [L, H, T, T]

    def probe(model):
        model.eval()
        model.set_attn_implementation("eager")
        with torch.no_grad():
            logits = model(input_ids=wins).logits[:, :-1] + vocab.offset()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                                     wins[:, 1:].reshape(-1)).item()
            prev = np.mean([analysis.previous_token_mass(patterns(model, torch.tensor([s])))
                            for s in sentences_compact], axis=0)
            sink = np.mean([analysis.sink_mass(patterns(model, torch.tensor([s])))
                            for s in sentences_compact], axis=0)
            ind = analysis.induction_score(patterns(model, probe_ids), n, start=1)
        model.set_attn_implementation("sdpa")
        best = {}
        for key, a in (("prev_token", prev), ("first_position", sink), ("induction", ind)):
            layer, head = np.unravel_index(np.argmax(a), a.shape)
            best[key] = [f"{layer}.{head}", round(float(a[layer, head]), 3)]
        return dict(heldout_loss_16_windows=round(loss, 3), **best)
    return probe


def windows(ids, seq_len):
    """Non-overlapping windows of seq_len tokens (the tail is dropped), as a [n, seq_len] array."""
    n = len(ids) // seq_len
    return ids[:n * seq_len].reshape(n, seq_len)


def heldout_sentences(texts, tok, n=50, min_tokens=12, max_tokens=60):
    """n held-out sentences of 12-60 tokens, spread evenly over the held-out chapters."""
    sents = []
    for text in texts:
        for para in text.split("\n\n"):
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", para.replace("\n", " ")):
                k = len(tok.encode(s).ids)
                if min_tokens <= k <= max_tokens:
                    sents.append(s)
    step = max(1, len(sents) // n)
    return sents[::step][:n]


# ---------------------------------------------------------------------------------------------
# Saving in the official GPT-2 layout
# ---------------------------------------------------------------------------------------------

def full_vocab_state(model, vocab):
    """The compact model's tensors as an ordinary GPT-2 with the full tied vocabulary: seen
    tokens' rows where they belong, every unseen token's row = the shared row. -> {name: array}"""
    state = {k: v.detach().cpu().numpy() for k, v in model.transformer.state_dict().items()
             if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    compact = state["wte.weight"]                                   # [n_seen + 1, d]
    state["wte.weight"] = compact[vocab.compact]                    # [vocab_size, d]
    return state


def save_model(model, vocab, out):
    """config.json, model.safetensors (F16, official GPT-2 key names), tokenizer.json."""
    from safetensors.numpy import save_file
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.astype(np.float16) for k, v in full_vocab_state(model, vocab).items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config
    config = {
        "activation_function": cfg.activation_function, "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": cfg.attn_pdrop, "bos_token_id": cfg.bos_token_id,
        "embd_pdrop": cfg.embd_pdrop, "eos_token_id": cfg.eos_token_id,
        "initializer_range": cfg.initializer_range,
        "layer_norm_epsilon": cfg.layer_norm_epsilon, "model_type": "gpt2",
        "n_ctx": cfg.n_positions, "n_embd": cfg.n_embd, "n_head": cfg.n_head,
        "n_inner": None, "n_layer": cfg.n_layer, "n_positions": cfg.n_positions,
        "resid_pdrop": cfg.resid_pdrop, "tie_word_embeddings": True,
        "vocab_size": vocab.vocab_size,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if (out / "tokenizer.json").resolve() != GPT2_TOKENIZER.resolve():
        shutil.copyfile(GPT2_TOKENIZER, out / "tokenizer.json")
    return sorted(tensors)


# ---------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None,
                   help=f"output directory (default {DEFAULT_OUT.relative_to(REPO)}; "
                        "with --quick or --tiny a temporary directory)")
    p.add_argument("--work", type=Path, default=None,
                   help="directory for checkpoint.pt and the training log (default: a "
                        "directory under ~/.cache/gpt2np-train)")
    p.add_argument("--resume", action="store_true",
                   help="continue from WORK/checkpoint.pt (without it, an existing checkpoint "
                        "is an error)")
    p.add_argument("--train-only", action="store_true",
                   help="train (and checkpoint), then stop without evaluating or saving")
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop after this step with a checkpoint (as if interrupted)")
    p.add_argument("--evaluate", action="store_true",
                   help="evaluate and save WORK/checkpoint.pt as it is, without training further "
                        "(the card records the steps done)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps (default {TRAIN['steps']}); with --resume: a new length for "
                        "the run (the learning-rate decay follows it from the checkpoint on)")
    p.add_argument("--init-from", type=Path, default=None, metavar="CHECKPOINT",
                   help="start from the weights of another run's checkpoint (same shape and "
                        "corpus), with a new optimizer and schedule and this run's settings: a "
                        "second phase of training; the card records the first phase too")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--quick", action="store_true", help="a tiny smoke run (a minute or two)")
    p.add_argument("--tiny", action="store_true",
                   help="a 2-layer, 32-wide model on short windows (the resume test)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {TRAIN['lr']})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change one number among the training settings for an experiment, e.g. "
                        "--set random_pool=1000 --set weight_decay=0.5 (recorded on the card)")
    p.add_argument("--corpus-deb", default=None, help=f"a downloaded {demo_corpus.DEB_PACKAGE}_*.deb")
    p.add_argument("--corpus-text", type=Path, default=None,
                   help=f"train on this text instead (documents separated by {EOT}; every "
                        f"{demo_corpus.HELDOUT_EVERY}th held out) - for tests")
    p.add_argument("--heldout-text", metavar="FILE",
                   help="write the held-out chapters to FILE ('-': standard output), separated "
                        f"by {EOT}, and exit without training (for `gpt2np corpus`)")
    return p.parse_args(argv)


def write_heldout_text(path, corpus_deb):
    """The held-out chapters (the split of `split_documents`) as one text, each chapter a document
    ended by <|endoftext|>, as the training stream has them."""
    with contextlib.redirect_stdout(sys.stderr):         # the text alone on standard output
        books, _ = demo_corpus.load_corpus(corpus_deb)
    _, held = demo_corpus.split_documents(books)
    text = "".join(f"{chapter}\n{EOT}\n" for _, chapter in held)
    if path == "-":
        sys.stdout.write(text)
    else:
        Path(path).write_text(text, encoding="utf-8")
        print(f"wrote {path}: {len(held)} held-out chapters ({', '.join(sorted({t for t, _ in held}))}), "
              f"{len(text):,} characters", file=sys.stderr)


def load_documents(args):
    """(train texts, held-out texts, corpus record)."""
    if args.corpus_text:
        docs = [d.strip() for d in args.corpus_text.read_text().split(EOT) if d.strip()]
        every, k0 = demo_corpus.HELDOUT_EVERY, demo_corpus.HELDOUT_EVERY // 2
        held = [d for k, d in enumerate(docs) if k % every == k0]
        train = [d for k, d in enumerate(docs) if k % every != k0] or docs
        return train, held or docs[:1], {"name": str(args.corpus_text), "chapters": len(docs)}
    books, corpus = demo_corpus.load_corpus(args.corpus_deb)
    train_docs, held_docs = demo_corpus.split_documents(books)
    train, held = [d[1] for d in train_docs], [d[1] for d in held_docs]
    corpus.update(chapters=len(train) + len(held), heldout_chapters=len(held),
                  train_chars=sum(map(len, train)), heldout_chars=sum(map(len, held)),
                  split=f"documents = chapters; every {demo_corpus.HELDOUT_EVERY}th chapter "
                        f"(k % {demo_corpus.HELDOUT_EVERY} == {demo_corpus.HELDOUT_EVERY // 2}, "
                        "counting across the novels) is held out")
    return train, held, corpus


def main(argv=None):
    args = parse_args(argv)
    if args.heldout_text:
        return write_heldout_text(args.heldout_text, args.corpus_deb)
    torch, transformers = need_torch()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    shape = dict(MODEL, **(TINY if args.tiny else {}))
    hp = dict(TRAIN, **(TINY_TRAIN if args.tiny else {}), **(QUICK if args.quick else {}))
    for key in ("steps", "lr"):
        if getattr(args, key) is not None:
            hp[key] = getattr(args, key)
    for item in args.set:
        key, _, value = item.partition("=")
        kind = type(hp.get(key))
        try:
            if kind not in (int, float):
                raise ValueError
            hp[key] = kind(value)
        except ValueError:
            sys.exit(f"--set {item}: expected KEY=NUMBER with KEY one of "
                     f"{', '.join(k for k, v in hp.items() if type(v) in (int, float))} "
                     "(a whole number where the default is one)")
    hp["warmup"] = min(hp["warmup"], max(1, hp["steps"] // 10))
    scratch = args.quick or args.tiny
    out = args.out or (Path(tempfile.mkdtemp(prefix="gpt2np-demo-quick-")) if scratch else DEFAULT_OUT)
    work = args.work or (Path(tempfile.mkdtemp(prefix="gpt2np-demo-work-")) if scratch
                         else Path.home() / ".cache" / "gpt2np-train" / "run")
    work.mkdir(parents=True, exist_ok=True)
    if args.evaluate and not (work / "checkpoint.pt").exists():
        sys.exit(f"--evaluate: there is no {work / 'checkpoint.pt'} to evaluate.")
    if (work / "checkpoint.pt").exists() and not (args.resume or args.evaluate):
        sys.exit(f"{work / 'checkpoint.pt'} exists: pass --resume to continue it, or another --work.")
    t_start = time.time()

    train_texts, held_texts, corpus = load_documents(args)
    tok = gpt2_tokenizer()
    train_ids, held_ids = encode_documents(tok, train_texts), encode_documents(tok, held_texts)
    vocab = Vocab(train_ids, shape["vocab_size"])
    corpus.update(train_tokens=len(train_ids), heldout_tokens=len(held_ids))
    log(f"corpus: {len(train_texts)} train documents ({len(train_ids):,} tokens), "
        f"{len(held_texts)} held out ({len(held_ids):,} tokens); {vocab.n_seen:,} distinct "
        f"GPT-2 tokens in the training text, {vocab.n_unseen:,} never seen")

    model = transformers.GPT2LMHeadModel(make_config(vocab.n_seen + 1, int(vocab.compact[
        tok.token_to_id(EOT)]), shape))
    init_position_embeddings(model)
    parent = None
    if args.init_from:
        parent = torch.load(args.init_from, weights_only=False)
        ps = parent["settings"]
        if ps["shape"] != shape or ps["n_seen"] != vocab.n_seen or ps["train_tokens"] != len(train_ids):
            sys.exit(f"--init-from {args.init_from}: a run of another shape or corpus ({ps['shape']}, "
                     f"{ps['n_seen']} tokens seen); it must match {shape}, {vocab.n_seen}.")
        model.load_state_dict(parent["model"])
    n_params = sum(p.numel() for p in model.parameters())
    settings = {"shape": shape, "hp": {k: list(v) if isinstance(v, tuple) else v for k, v in hp.items()},
                "seed": args.seed, "n_seen": vocab.n_seen,
                "train_tokens": len(train_ids)}
    if parent:
        rec = parent["record"]
        settings["init_from"] = {"checkpoint": str(args.init_from), "step": rec["step"],
                                 "settings": parent["settings"],
                                 "record": {k: rec.get(k) for k in ("step", "wall_s", "cpu_s", "sittings",
                                                                    "probes", "plan_changes")}}
        log(f"starting from the weights of {args.init_from} (step {rec['step']}, "
            f"CPU {rec['cpu_s'] / 60:.1f} min)")
    log(f"model: {shape}, {n_params:,} parameters while training (compact vocabulary of "
        f"{vocab.n_seen + 1:,}); {hp['steps']} steps; work directory {work}")
    sentences = heldout_sentences(held_texts, tok)
    probe = probe_fn(vocab, vocab.compact[held_ids],
                     [vocab.compact[tok.encode(s).ids].tolist() for s in sentences[::2]],
                     shape["n_positions"], hp)
    record = train(model, torch.from_numpy(vocab.compact[train_ids]), hp, args.seed, vocab, work,
                   settings, probe, stop_at=0 if args.evaluate else args.stop_at,
                   new_steps=(args.resume or args.evaluate) and args.steps is not None,
                   evaluate=args.evaluate,
                   starts_at=torch.from_numpy(sentence_starts(tok, train_ids)) if hp["sentence_starts"] else None)
    (work / "training-record.json").write_text(json.dumps(record, indent=2) + "\n")
    if args.train_only or (record["step"] < hp["steps"] and not args.evaluate):
        log(f"stopped at step {record['step']} of {hp['steps']} "
            f"({record['wall_s'] / 60:.1f} min, CPU {record['cpu_s'] / 60:.1f} min so far)")
        return
    import evaluate_demo
    evaluate_demo.finish(model, vocab, tok, out, args=args, shape=shape, hp=hp, record=record,
                         corpus=corpus, train_ids=train_ids, held_ids=held_ids, settings=settings,
                         held_texts=held_texts, sentences=sentences, n_params=n_params,
                         t_start=t_start)


if __name__ == "__main__":
    main()
