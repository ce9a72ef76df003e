#!/usr/bin/env python3
"""Train the small demo model bundled with gpt2np (in `gpt2np/demo/`).

The demo model is NOT GPT-2. It is a tiny GPT-2-shaped transformer (4 layers, 8 heads,
n_embd 256, context 256, a 4,096-token byte-level BPE vocabulary), trained from scratch on the
six novels of Jane Austen, so that gpt2np works out of the box, with no download, and its
attention viewer has real learned patterns to show (a head that looks mostly at the previous
token, heads that park their attention on the first position, ...).

What it does, step by step:
  1. Corpus: the Debian package `r-cran-janeaustenr` (1.0.0-1), the R data package by Julia Silge
     (MIT licence), which ships the full texts of Austen's six finished novels as R data. The
     novels themselves are in the public domain (Austen died in 1817; the texts are Project
     Gutenberg transcriptions with Gutenberg's header and licence already removed), so a model
     trained on them can be redistributed freely. The script runs `apt-get download
     r-cran-janeaustenr` itself (no root, nothing installed) unless you pass `--corpus-deb FILE`
     or the package is installed (`apt-get install r-cran-janeaustenr`). The R data file is read
     with a small reader below; R is not needed.
  2. Cleaning: drops title pages, chapter headings, editorial notes and the closing "THE END";
     unwraps hard-wrapped lines into paragraphs; removes the _underscores_ marking italics.
     Every chapter is one document; every 25th chapter is held out (about 4% of the text).
  3. Tokenizer: byte-level BPE trained with `tokenizers` on the training chapters, 4,095 merged
     tokens plus `<|endoftext|>` as the last id (4095); saved as `tokenizer.json`.
  4. Model: `transformers.GPT2LMHeadModel`, trained on the CPU with PyTorch (AdamW, warm-up then
     cosine decay), fixed seed. Default: 1,800 steps of 2,048 tokens, each step 16 windows of 64
     tokens plus 4 of 256 (short windows make heads specialise sooner; long ones teach every
     position). In 4 of the 64-token windows the second half repeats the first (text the model
     can only predict the second time by looking back: a reason to track the previous token).
     Position embeddings start from sinusoids (then are trained). The shipped model took 24
     minutes with `--threads 1` on a shared 2-core machine with another training run on the
     other core (there, 1 thread is much faster than 2).
  5. Evaluation: train and held-out loss (nats/token) against a unigram baseline; attention
     patterns measured over 50 held-out sentences (mean weight on the previous token and on
     position 0 for every head).
  6. Output (Hugging Face layout, as the official GPT-2 checkpoint): `config.json`,
     `model.safetensors` (F16; keys without `transformer.`, no `lm_head.weight` - it is tied to
     `wte.weight`; Conv1D weights [in, out]), `tokenizer.json`, `training.json` (what was done
     and measured) and `README.md` (model card). The file is reloaded with `from_pretrained` and
     the held-out loss recomputed to prove it is right.

Usage:
    python scripts/train_demo_model.py                  # full run, writes gpt2np/demo/
    python scripts/train_demo_model.py --quick          # 1-minute smoke test, writes to a temp dir
    python scripts/train_demo_model.py --heldout-text austen-heldout.txt   # the held-out chapters
Needs: torch==2.13.0 (CPU), transformers, tokenizers, safetensors, numpy; apt-get for the corpus.
"""

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import platform
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "gpt2np" / "demo"
CACHE = Path.home() / ".cache" / "gpt2np-train"

DEB_PACKAGE = "r-cran-janeaustenr"
DEB_VERSION = "1.0.0-1"
INSTALLED_RDB = Path("/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb")
RDB_IN_DEB = "./usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
BOOK_TITLES = {  # first line of each text in the package -> title
    "SENSE AND SENSIBILITY": "Sense and Sensibility",
    "PRIDE AND PREJUDICE": "Pride and Prejudice",
    "MANSFIELD PARK": "Mansfield Park",
    "EMMA": "Emma",
    "NORTHANGER ABBEY": "Northanger Abbey",
    "PERSUASION": "Persuasion",
}
EOT = "<|endoftext|>"
HELDOUT_EVERY = 25          # every 25th chapter is held out
MAX_SIZE = 10 * 1024 * 1024  # gpt2np/demo/ must stay under 10 MB

MODEL = dict(n_layer=4, n_head=8, n_embd=256, n_positions=256, vocab_size=4096)
# What one training step sees: phases (until this fraction of the steps, windows per step as
# (length, how many)). Every step is 2,048 tokens. Short windows give attention a strong learning
# signal (few keys per query, so a head that picks the right one gains a lot); long ones teach
# all 256 positions and the habit of parking attention on position 0.
SCHEDULES = {
    "mixed": ((1.0, ((64, 16), (256, 4))),),                      # both kinds in every step
    "long": ((1.0, ((256, 8),)),),                                # GPT-2's way
    "curriculum": ((0.4, ((64, 32),)), (0.7, ((128, 16),)), (1.0, ((256, 8),))),
}
TRAIN = dict(steps=1800, schedule="mixed", repeat=4, repeat_kind="text", lr=2e-3, min_lr=1e-4,
             warmup=200, weight_decay=0.1, betas=(0.9, 0.95), grad_clip=1.0, eval_every=200)
QUICK = dict(steps=30, eval_every=10)
TARGETS = dict(prev_token=0.5, first_position=0.30)


def log(msg=""):
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# 1. Corpus
# ---------------------------------------------------------------------------------------------

def find_corpus_deb(corpus_deb):
    """Path of the r-cran-janeaustenr .deb: given, cached, or fetched with `apt-get download`."""
    if corpus_deb:
        return Path(corpus_deb)
    CACHE.mkdir(parents=True, exist_ok=True)
    cached = sorted(CACHE.glob(f"{DEB_PACKAGE}_*.deb"))
    if cached:
        return cached[-1]
    for spec in (f"{DEB_PACKAGE}={DEB_VERSION}", DEB_PACKAGE):
        log(f"corpus: apt-get download {spec}  (into {CACHE})")
        r = subprocess.run(["apt-get", "download", spec], cwd=CACHE, capture_output=True, text=True)
        cached = sorted(CACHE.glob(f"{DEB_PACKAGE}_*.deb"))
        if r.returncode == 0 and cached:
            return cached[-1]
    sys.exit(f"Could not fetch the corpus package {DEB_PACKAGE}: {r.stderr.strip()}\n"
             f"Run `apt-get update && apt-get download {DEB_PACKAGE}` (or `apt-get install "
             f"{DEB_PACKAGE}`), then pass --corpus-deb FILE.deb.")


def read_deb(deb_path):
    """(control fields, Rdata.rdb bytes) from a .deb: an `ar` archive holding tar members."""
    data = Path(deb_path).read_bytes()
    assert data[:8] == b"!<arch>\n", f"{deb_path} is not a .deb"
    members, pos = {}, 8
    while pos + 60 <= len(data):
        name = data[pos:pos + 16].decode().strip().rstrip("/")
        size = int(data[pos + 48:pos + 58])
        members[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)

    def tar_member(prefix, wanted):
        (name,) = [n for n in members if n.startswith(prefix)]
        with tarfile.open(fileobj=io.BytesIO(members[name])) as tf:
            return tf.extractfile(wanted).read()

    control = tar_member("control.tar", "./control").decode()
    fields = dict(re.findall(r"^([\w-]+): (.*)$", control, re.M))
    return fields, tar_member("data.tar", RDB_IN_DEB)


def read_r_character_vectors(rdb):
    """Character vectors stored in an R lazy-load database (`Rdata.rdb`).

    The file is a run of records: a 4-byte big-endian length, then a zlib stream holding one
    object in R's XDR serialization. Each novel is a STRSXP (type 16): a length, then per line a
    CHARSXP (type 9): flags, byte length (-1 = NA) and the bytes."""
    vectors, pos = [], 0
    while pos < len(rdb):
        z = zlib.decompressobj()
        raw = z.decompress(rdb[pos + 4:])
        pos = len(rdb) - len(z.unused_data)
        assert raw[:2] == b"X\n", "not an R XDR serialization"
        i = 14                                    # 'X\n', version, R version, min R version
        if struct.unpack(">i", raw[2:6])[0] == 3:  # version 3 adds the native encoding name
            i += 4 + struct.unpack(">i", raw[i:i + 4])[0]
        flags, n = struct.unpack(">ii", raw[i:i + 8])
        i += 8
        assert flags & 0xFF == 16, "expected a character vector"
        lines = []
        for _ in range(n):
            cflags, length = struct.unpack(">ii", raw[i:i + 8])
            i += 8
            encoding = "latin-1" if cflags & (1 << 14) else "utf-8"
            lines.append("" if length < 0 else raw[i:i + length].decode(encoding))
            i += max(length, 0)
        vectors.append(lines)
    return vectors


def load_corpus(corpus_deb):
    """{title: list of lines}, and a description of where the text came from."""
    if not corpus_deb and INSTALLED_RDB.exists():
        rdb, version, source = INSTALLED_RDB.read_bytes(), installed_version(), str(INSTALLED_RDB)
    else:
        deb = find_corpus_deb(corpus_deb)
        fields, rdb = read_deb(deb)
        version, source = fields.get("Version", "?"), deb.name
    books = {}
    for lines in read_r_character_vectors(rdb):
        books[BOOK_TITLES[lines[0].strip().upper()]] = lines
    assert sorted(books) == sorted(BOOK_TITLES.values()), sorted(books)
    info = {
        "name": "Jane Austen's six completed novels",
        "books": list(BOOK_TITLES.values()),
        "package": f"Debian {DEB_PACKAGE}",
        "package_version": version,
        "package_source": source,
        "package_license": "MIT (janeaustenr by Julia Silge, CRAN 1.0.0; Debian packaging MIT)",
        "text_license": "public domain (Jane Austen, 1775-1817; Project Gutenberg transcriptions, "
                        "Gutenberg header and licence already removed by the package)",
        "rdata_sha256": hashlib.sha256(rdb).hexdigest(),
        "how_to_get": f"apt-get download {DEB_PACKAGE}  (or apt-get install {DEB_PACKAGE})",
    }
    return books, info


def installed_version():
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", DEB_PACKAGE],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


# ---------------------------------------------------------------------------------------------
# 2. Cleaning and the train / held-out split
# ---------------------------------------------------------------------------------------------

CHAPTER = re.compile(r"^\s*chapter\s+[0-9ivxlc]+\.?\s*$", re.I)
DROP_LINE = re.compile(r"^\s*(volume\s+[ivx0-9]+|the end|finis)\.?\s*$", re.I)
NOTE = re.compile(r"\[[^\]]*\]", re.S)   # editorial notes: [At this point in the first edition ...]


def chapters(lines):
    """Lines of one novel -> list of chapter texts (front matter and end matter dropped)."""
    out, current = [], None
    for line in lines:
        if line.strip() in ("A NOTE ON THE TEXT",):    # Northanger Abbey's editorial afterword
            break
        if CHAPTER.match(line):
            if current is not None:
                out.append(current)
            current = []
        elif current is not None and not DROP_LINE.match(line):
            current.append(line)
    out.append(current)
    return [clean_text(c) for c in out]


def clean_text(lines):
    """Unwrap hard-wrapped lines into paragraphs (verse keeps its line breaks)."""
    text = NOTE.sub("", "\n".join(lines))
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        rows = [r for r in block.split("\n") if r.strip()]
        if not rows:
            continue
        verse = all(r.startswith("  ") for r in rows)
        para = ("\n" if verse else " ").join(r.strip() for r in rows)
        para = re.sub(r"_([^_]+)_", r"\1", para).replace("_", "")
        paragraphs.append(re.sub(r"[ \t]+", " ", para))
    return "\n\n".join(paragraphs)


def split_documents(books):
    """All chapters as (title, text); every HELDOUT_EVERY-th chapter (counting across the novels,
    starting with the 13th) is held out."""
    docs = [(title, ch) for title, lines in books.items() for ch in chapters(lines) if ch]
    held = [d for k, d in enumerate(docs) if k % HELDOUT_EVERY == HELDOUT_EVERY // 2]
    train = [d for k, d in enumerate(docs) if k % HELDOUT_EVERY != HELDOUT_EVERY // 2]
    return train, held


# ---------------------------------------------------------------------------------------------
# 3. Tokenizer
# ---------------------------------------------------------------------------------------------

def train_tokenizer(texts, vocab_size):
    """Byte-level BPE as GPT-2's: ByteLevel pre-tokenizer without prefix space, ByteLevel decoder;
    vocab_size - 1 learned tokens, then <|endoftext|> as the last id."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, special_tokens=[], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    assert tok.get_vocab_size() == vocab_size - 1, tok.get_vocab_size()
    tok.add_special_tokens([EOT])
    assert tok.token_to_id(EOT) == vocab_size - 1
    return tok


def encode_documents(tok, texts):
    """One stream of ids: every document followed by <|endoftext|> (as GPT-2 was trained)."""
    eot = tok.token_to_id(EOT)
    ids = []
    for enc in tok.encode_batch(texts):
        ids.extend(enc.ids)
        ids.append(eot)
    return np.array(ids, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# 4. Model and training
# ---------------------------------------------------------------------------------------------

def make_config(eot_id, **shape):
    from transformers import GPT2Config
    return GPT2Config(activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                      attn_pdrop=0.0, layer_norm_epsilon=1e-5, initializer_range=0.02,
                      bos_token_id=eot_id, eos_token_id=eot_id, n_ctx=shape["n_positions"],
                      tie_word_embeddings=True, **shape)


def init_position_embeddings(model, kind, std):
    """Start wpe from sinusoids (scaled to `std`) instead of noise; wpe is then trained like every
    other weight. kind "sinusoid": the original Transformer's frequencies, 1 down to 1/10000 radian
    per token. kind "sinusoid-ctx": frequencies spread geometrically from pi (a sign flip every
    token, the fastest a token grid can show) down to one cycle per context (2 pi / 256). With
    those, position i-1 is a fixed, clearly distinct rotation of position i, so a head can learn
    "attend to the previous token" early with small weights."""
    import torch
    n_pos, d = model.transformer.wpe.weight.shape
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    k = torch.arange(d // 2, dtype=torch.float64)
    if kind == "sinusoid":
        freq = 10000.0 ** (-2 * k / d)
    else:
        freq = math.pi * (2.0 / n_pos) ** (k / (d // 2 - 1))
    pe = torch.zeros(n_pos, d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    pe *= std / pe.std().item()
    with torch.no_grad():
        model.transformer.wpe.weight.copy_(pe.float())


def windows_at(step, hp):
    """[(window length, number of windows)] for this step, from the schedule."""
    return next(w for until, w in SCHEDULES[hp["schedule"]] if step < until * hp["steps"])


def schedule_text(hp):
    phases = SCHEDULES[hp["schedule"]]
    text = [" + ".join(f"{k} windows of {n}" for n, k in w) for _, w in phases]
    if len(phases) == 1:
        return text[0] + " per step"
    return "; ".join(f"until {until:.0%} of the steps: {t}" for (until, _), t in zip(phases, text))


def tokens_per_step(hp):
    return sum(n * k for n, k in SCHEDULES[hp["schedule"]][0][1])


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


def next_token_loss(model, x):
    """Mean cross-entropy (nats) of predicting x[:, 1:] from x[:, :-1]."""
    import torch.nn.functional as F
    logits = model(input_ids=x).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))


def repeat_halves(x, k, kind="text", gen=None, vocab=None):
    """The first k windows of x [n, T] become a half-window sequence A followed by A again.
    kind "text": A is the window's own first half; kind "random": A is uniformly random tokens
    (ids below `vocab`), which only an induction head can predict the second time.
    Predicting the second copy rewards induction (find the earlier occurrence of the current
    token, copy what followed it), and the induction circuit needs a head in an earlier layer
    that attends to the previous token - the head the demo is meant to show."""
    import torch
    half = x.size(1) // 2
    x = x.clone()
    if kind == "random":
        x[:k, :half] = torch.randint(0, vocab, (k, half), generator=gen)
    x[:k, half:2 * half] = x[:k, :half]
    return x


def train(model, data, hp, seed, heldout_windows, probe):
    """AdamW on random windows of the training stream; prints loss and ETA, and every
    eval_every steps the held-out loss and what `probe` (the attention measurement) says."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    stream = torch.from_numpy(data)
    opt = make_optimizer(model, hp)
    t0, smooth = time.time(), None
    model.train()
    for step in range(hp["steps"]):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, hp)
        parts, n_total = [], 0
        for i, (seq_len, batch) in enumerate(windows_at(step, hp)):
            starts = torch.randint(0, len(stream) - seq_len, (batch,), generator=gen)
            x = torch.stack([stream[s:s + seq_len] for s in starts.tolist()])
            if i == 0 and hp["repeat"]:
                x = repeat_halves(x, hp["repeat"], hp["repeat_kind"], gen, MODEL["vocab_size"] - 1)
            parts.append((next_token_loss(model, x), batch * (seq_len - 1)))
            n_total += batch * (seq_len - 1)
        loss = sum(part * n for part, n in parts) / n_total     # mean over every predicted token
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp["grad_clip"])
        opt.step()
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        done = step + 1
        if done % 20 == 0 or done == hp["steps"]:
            el = time.time() - t0
            log(f"step {done:5d}/{hp['steps']}  loss {loss.item():.3f} (smoothed {smooth:.3f})  "
                f"lr {lr_at(step, hp):.2e}  {el:6.0f}s elapsed, ETA {el / done * (hp['steps'] - done):5.0f}s")
        if done % hp["eval_every"] == 0 and done < hp["steps"]:
            log(f"      held-out loss (first {len(heldout_windows[:32])} windows): "
                f"{evaluate(model, heldout_windows[:32]):.3f};  {probe(model)}")
            model.train()
    model.eval()
    return time.time() - t0


# ---------------------------------------------------------------------------------------------
# 5. Evaluation
# ---------------------------------------------------------------------------------------------

def windows(ids, seq_len):
    """Non-overlapping windows of seq_len tokens (the tail is dropped), as a [n, seq_len] array."""
    n = len(ids) // seq_len
    return ids[:n * seq_len].reshape(n, seq_len)


def evaluate(model, wins, batch=16):
    """Mean next-token loss (nats/token) over windows; each window predicts its tokens 2..n."""
    import torch
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(wins), batch):
            x = torch.from_numpy(np.ascontiguousarray(wins[i:i + batch]))
            n = x.size(0) * (x.size(1) - 1)
            total += next_token_loss(model, x).item() * n
            count += n
    return total / count


def unigram_loss(train_ids, heldout_ids, vocab_size):
    """Cross-entropy of held-out tokens under the train unigram distribution, add-one smoothed."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[heldout_ids].mean())


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


def attention_patterns(model, tok, sentences):
    """Per head (layer, head): mean attention weight on the previous token, A[i, i-1], and on
    position 0, A[i, 0], over query positions i >= 1, averaged over the sentences."""
    import torch
    prev = first = 0.0
    with torch.no_grad():
        for s in sentences:
            x = torch.tensor([tok.encode(s).ids])
            att = torch.stack(model(input_ids=x, output_attentions=True).attentions)[:, 0]
            att = att.double().numpy()                      # [layer, head, query, key]
            q = np.arange(1, att.shape[-1])
            prev = prev + att[:, :, q, q - 1].mean(-1)
            first = first + att[:, :, q, 0].mean(-1)
    return prev / len(sentences), first / len(sentences)


def induction_scores(model, vocab, n=30, seed=0):
    """Per head: on n random tokens shown twice, the mean weight a query in the second copy puts
    on the token just after its earlier occurrence (the induction pattern). -> [layer, head]"""
    import torch
    ids = np.random.default_rng(seed).integers(0, vocab, n)
    x = torch.tensor([np.concatenate([ids, ids]).tolist()])
    with torch.no_grad():
        att = torch.stack(model(input_ids=x, output_attentions=True).attentions)[:, 0].double().numpy()
    q = np.arange(n, 2 * n)
    return att[:, :, q, q - n + 1].mean(-1)


def attention_probe(tok, sentences):
    """A function model -> one line: the best previous-token, position-0 and induction heads."""
    def probe(model):
        model.set_attn_implementation("eager")
        prev, first = attention_patterns(model, tok, sentences)
        induction = induction_scores(model, tok.get_vocab_size() - 1)
        model.set_attn_implementation("sdpa")
        (pl, ph), (fl, fh), (il, ih) = (np.unravel_index(np.argmax(a), a.shape)
                                        for a in (prev, first, induction))
        return (f"best prev-token head {pl}.{ph} {prev[pl, ph]:.3f}, "
                f"best position-0 head {fl}.{fh} {first[fl, fh]:.3f}, "
                f"best induction head {il}.{ih} {induction[il, ih]:.3f}")
    return probe


def report_attention(prev, first):
    log("\nattention over held-out sentences (mean over query positions i >= 1):")
    log("  head    prev-token A[i,i-1]   position-0 A[i,0]")
    for layer in range(prev.shape[0]):
        for head in range(prev.shape[1]):
            log(f"  {layer}.{head:<5d} {prev[layer, head]:10.3f}        {first[layer, head]:10.3f}")

    def best(a):
        layer, head = np.unravel_index(np.argmax(a), a.shape)
        return {"head": f"{layer}.{head}", "layer": int(layer), "index": int(head),
                "value": round(float(a[layer, head]), 4)}
    return best(prev), best(first)


def sample(model, tok, prompt, n_tokens=40, seed=0, top_k=20):
    """A short top-k sample, for the log and the model card."""
    import torch
    torch.manual_seed(seed)
    ids = torch.tensor([tok.encode(prompt).ids])
    with torch.no_grad():
        for _ in range(n_tokens):
            logits = model(input_ids=ids[:, -256:]).logits[0, -1]
            v, i = torch.topk(logits, top_k)
            ids = torch.cat([ids, i[torch.multinomial(torch.softmax(v, -1), 1)].view(1, 1)], 1)
    return tok.decode(ids[0].tolist())


# ---------------------------------------------------------------------------------------------
# 6. Saving in the official GPT-2 layout, and the check that the file is right
# ---------------------------------------------------------------------------------------------

def save_model(model, tok, out):
    """config.json, model.safetensors (F16, official GPT-2 key names), tokenizer.json."""
    from safetensors.numpy import save_file
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().numpy().astype(np.float16)
               for k, v in model.transformer.state_dict().items()
               if not k.endswith((".attn.bias", ".attn.masked_bias"))}
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
        "vocab_size": cfg.vocab_size,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tok.save(str(out / "tokenizer.json"))
    return sorted(tensors)


def reload(out):
    """The saved model, loaded back by transformers (F16 values widened to float32)."""
    import torch
    from transformers import GPT2LMHeadModel
    return GPT2LMHeadModel.from_pretrained(str(out), dtype=torch.float32,
                                           attn_implementation="eager").eval()


def dir_size(path):
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())


def write_model_card(out, record):
    L, m, c, t = record["losses"], record["model"], record["corpus"], record["training"]
    a = record["attention"]
    n_rep = t.get("repeated_windows_per_step", 0)
    repeats = (f"; in {n_rep} of the short windows the second half repeats the first"
               + (" (random tokens)" if t.get("repeated_windows_kind") == "random" else "")) if n_rep else ""
    induction = a.get("induction")
    if induction:
        weak = "; no real induction head formed" if induction["best_value"] < 0.3 else ""
        induction = (f"\n- strongest induction pattern: head **{induction['best_head']}**, "
                     f"{induction['best_value']:.2f} (on random tokens shown twice{weak}).")
    else:
        induction = ""
    card = f"""# gpt2np demo model — not GPT-2

A tiny GPT-2-shaped language model bundled with gpt2np so that everything works without a
download. It has GPT-2's architecture (same code path, same file layout as the official
`openai-community/gpt2` checkpoint) but is about {record['parameters'] / 1e6:.1f} M parameters
instead of 124 M, and knows only Jane Austen: expect Regency-flavoured, mostly ungrammatical text.
Use it to see how a transformer works and what attention heads learn, not for its answers.

| | |
|---|---|
| architecture | GPT-2: {m['n_layer']} layers, {m['n_head']} heads, n_embd {m['n_embd']}, context {m['n_positions']}, gelu_new, tied LM head |
| tokenizer | byte-level BPE (as GPT-2's), {m['vocab_size']} tokens, `<|endoftext|>` = {m['vocab_size'] - 1} |
| weights | `model.safetensors`, F16, official GPT-2 key names (no `transformer.` prefix, no `lm_head.weight`) |
| corpus | {c['name']} ({', '.join(c['books'])}) — {c['train_chars'] + c['heldout_chars']:,} characters |
| corpus source | Debian package `{DEB_PACKAGE}` {c['package_version']} ({c['package_license']}) |
| corpus licence | {c['text_license']} |
| training | {t['steps']} steps x {t['tokens_per_step']:,} tokens ({t['schedule_text']}{repeats}) = {t['tokens_seen']:,} tokens (~{t['epochs']:.1f} epochs), seed {t['seed']}, {t['wall_time_s'] / 60:.1f} min on {t['threads']} CPU thread{'s' if t['threads'] > 1 else ''} |

## Losses (nats per token)

| | loss |
|---|---|
| train | {L['train']:.3f} |
| held-out (every {HELDOUT_EVERY}th chapter, never trained on) | {L['heldout']:.3f} |
| unigram baseline on held-out (train token frequencies, add-one) | {L['unigram_baseline']:.3f} |

## Attention it learned (50 held-out sentences)

- previous-token head: **{a['best_prev_token']['head']}** (layer.head) puts {a['best_prev_token']['value']:.2f} of its attention on the token just before.
- first-position head: **{a['best_first_position']['head']}** puts {a['best_first_position']['value']:.2f} of its attention on position 0.{induction}

Sample (top-k 20): *{record['sample']}*

Rebuild it with `python scripts/train_demo_model.py` (see `training.json` for every setting and
measurement). Weights and this card: same licence as gpt2np (MIT); the training text is in the
public domain.
"""  # noqa: E501 - a markdown table row or list item is one line of the card
    (out / "README.md").write_text(card)


# ---------------------------------------------------------------------------------------------

def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None,
                   help=f"output directory (default {DEFAULT_OUT.relative_to(REPO)}; "
                        "with --quick a temporary directory)")
    p.add_argument("--steps", type=int, default=None, help=f"training steps (default {TRAIN['steps']})")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--quick", action="store_true", help="tiny run for smoke testing (~1 minute)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--wpe-init", choices=["sinusoid-ctx", "sinusoid", "normal"],
                   default="sinusoid-ctx",
                   help="initial position embeddings (default: scaled sinusoids)")
    p.add_argument("--wpe-std", type=float, default=0.08, help="std of the sinusoidal wpe init")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default=None,
                   help=f"training windows per step (default {TRAIN['schedule']})")
    p.add_argument("--repeat", type=int, default=None,
                   help="how many of each step's first-kind windows repeat their first half "
                        f"(default {TRAIN['repeat']})")
    p.add_argument("--repeat-kind", choices=["text", "random"], default=None,
                   help="what the repeated windows repeat: their own text or random tokens "
                        f"(default {TRAIN['repeat_kind']})")
    p.add_argument("--vocab", type=int, default=None,
                   help=f"tokenizer vocabulary, <|endoftext|> included (default {MODEL['vocab_size']})")
    p.add_argument("--n-embd", type=int, default=None,
                   help=f"width of the residual stream (default {MODEL['n_embd']})")
    p.add_argument("--n-head", type=int, default=None,
                   help=f"attention heads per layer (default {MODEL['n_head']}; must divide n_embd)")
    p.add_argument("--lr", type=float, default=None,
                   help=f"peak learning rate (default {TRAIN['lr']})")
    p.add_argument("--weight-decay", type=float, default=None,
                   help=f"AdamW weight decay on the weight matrices (default {TRAIN['weight_decay']})")
    p.add_argument("--corpus-deb", default=None, help=f"a downloaded {DEB_PACKAGE}_*.deb")
    p.add_argument("--heldout-text", metavar="FILE",
                   help="write the held-out chapters to FILE ('-': standard output), separated "
                        f"by {EOT}, and exit without training (for `gpt2np corpus`)")
    return p.parse_args()


def write_heldout_text(path, corpus_deb):
    """The held-out chapters (the split of `split_documents`) as one text, each chapter a document
    ended by <|endoftext|>, as the training stream has them."""
    with contextlib.redirect_stdout(sys.stderr):         # the text alone on standard output
        books, _ = load_corpus(corpus_deb)
    _, held = split_documents(books)
    text = "".join(f"{chapter}\n{EOT}\n" for _, chapter in held)
    if path == "-":
        sys.stdout.write(text)
    else:
        Path(path).write_text(text, encoding="utf-8")
        print(f"wrote {path}: {len(held)} held-out chapters ({', '.join(sorted({t for t, _ in held}))}), "
              f"{len(text):,} characters", file=sys.stderr)


def main():
    args = parse_args()
    if args.heldout_text:
        return write_heldout_text(args.heldout_text, args.corpus_deb)
    import safetensors
    import tokenizers
    import torch
    import transformers
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    hp = dict(TRAIN, **(QUICK if args.quick else {}))
    # Options given on the command line override the defaults (None = not given).
    for key in ("steps", "schedule", "repeat", "repeat_kind", "lr", "weight_decay"):
        if getattr(args, key) is not None:
            hp[key] = getattr(args, key)
    for key, arg in (("n_head", "n_head"), ("n_embd", "n_embd"), ("vocab_size", "vocab")):
        if getattr(args, arg) is not None:
            MODEL[key] = getattr(args, arg)
    hp["warmup"] = min(hp["warmup"], max(1, hp["steps"] // 10))
    out = args.out or (Path(tempfile.mkdtemp(prefix="gpt2np-demo-quick-")) if args.quick else DEFAULT_OUT)
    t_start = time.time()

    books, corpus = load_corpus(args.corpus_deb)
    train_docs, held_docs = split_documents(books)
    train_texts, held_texts = [d[1] for d in train_docs], [d[1] for d in held_docs]
    corpus.update(chapters=len(train_docs) + len(held_docs), heldout_chapters=len(held_docs),
                  train_chars=sum(map(len, train_texts)), heldout_chars=sum(map(len, held_texts)),
                  split=f"documents = chapters; every {HELDOUT_EVERY}th chapter (k % {HELDOUT_EVERY} "
                        f"== {HELDOUT_EVERY // 2}, counting across the novels) is held out")
    log(f"corpus: {corpus['chapters']} chapters, {corpus['train_chars']:,} train chars, "
        f"{corpus['heldout_chars']:,} held-out chars ({len(held_docs)} chapters)")

    tok = train_tokenizer(train_texts, MODEL["vocab_size"])
    train_ids, held_ids = encode_documents(tok, train_texts), encode_documents(tok, held_texts)
    corpus.update(train_tokens=len(train_ids), heldout_tokens=len(held_ids))
    log(f"tokenizer: {tok.get_vocab_size()} tokens; {len(train_ids):,} train tokens, "
        f"{len(held_ids):,} held-out tokens ({corpus['train_chars'] / len(train_ids):.2f} chars/token)")

    model = transformers.GPT2LMHeadModel(make_config(tok.token_to_id(EOT), **MODEL))
    if args.wpe_init != "normal":
        init_position_embeddings(model, args.wpe_init, args.wpe_std)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {MODEL}, {n_params:,} parameters; training {hp['steps']} steps of "
        f"{tokens_per_step(hp)} tokens, schedule {hp['schedule']}: {schedule_text(hp)}")
    held_wins = windows(held_ids, MODEL["n_positions"])
    sentences = heldout_sentences(held_texts, tok)
    train_time = train(model, train_ids, hp, args.seed, held_wins,
                       attention_probe(tok, sentences[::2]))

    log("\nevaluating ...")
    rng = np.random.default_rng(args.seed)
    train_wins = windows(train_ids, MODEL["n_positions"])
    train_wins = train_wins[np.sort(rng.choice(len(train_wins), min(len(train_wins), len(held_wins)),
                                               replace=False))]
    losses = {"train": evaluate(model, train_wins), "heldout": evaluate(model, held_wins),
              "unigram_baseline": unigram_loss(train_ids, held_ids, MODEL["vocab_size"])}

    keys = save_model(model, tok, out)
    reloaded = reload(out)
    losses["heldout_reloaded_f16"] = evaluate(reloaded, held_wins)
    losses = {k: round(v, 4) for k, v in losses.items()}
    log(f"loss (nats/token): train {losses['train']:.4f}  held-out {losses['heldout']:.4f}  "
        f"unigram baseline {losses['unigram_baseline']:.4f}  held-out after F16 save+reload "
        f"{losses['heldout_reloaded_f16']:.4f}")
    assert abs(losses["heldout_reloaded_f16"] - losses["heldout"]) < 0.01, "saved model differs"

    prev, first = attention_patterns(reloaded, tok, sentences)
    best_prev, best_first = report_attention(prev, first)
    induction = induction_scores(reloaded, tok.get_vocab_size() - 1)
    il, ih = np.unravel_index(np.argmax(induction), induction.shape)
    log(f"best induction head {il}.{ih}: {induction[il, ih]:.3f} (30 random tokens shown twice)")
    log(f"best previous-token head {best_prev['head']}: {best_prev['value']:.3f} "
        f"(target >= {TARGETS['prev_token']});  best position-0 head {best_first['head']}: "
        f"{best_first['value']:.3f} (target >= {TARGETS['first_position']})  [{len(sentences)} sentences]")
    text = sample(reloaded, tok, "It is a truth universally acknowledged", seed=args.seed)
    log(f"\nsample: {text}\n")

    record = {
        "what": "gpt2np demo model - NOT GPT-2: a tiny GPT-2-shaped model trained from scratch",
        "command": " ".join(["python", "scripts/train_demo_model.py", *sys.argv[1:]]),
        "corpus": corpus,
        "tokenizer": {"type": "byte-level BPE (tokenizers), ByteLevel pre-tokenizer "
                              "add_prefix_space=False, ByteLevel decoder",
                      "vocab_size": tok.get_vocab_size(), "endoftext_id": tok.token_to_id(EOT),
                      "trained_on": "train chapters only"},
        "model": dict(MODEL, activation_function="gelu_new", dropout=0.0, tied_lm_head=True),
        "parameters": n_params,
        "weights": {"file": "model.safetensors", "dtype": "F16", "keys": len(keys),
                    "layout": "official GPT-2: no transformer. prefix, no lm_head.weight, "
                              "Conv1D weights [in, out]"},
        "training": {
            "seed": args.seed, "steps": hp["steps"], "tokens_per_step": tokens_per_step(hp),
            "windows": hp["schedule"], "schedule_text": schedule_text(hp),
            "repeated_windows_per_step": hp["repeat"], "repeated_windows_kind": hp["repeat_kind"],
            "optimizer": "AdamW", "lr": hp["lr"], "min_lr": hp["min_lr"],
            "lr_schedule": f"linear warm-up {hp['warmup']} steps, cosine decay to min_lr",
            "weight_decay": hp["weight_decay"], "betas": list(hp["betas"]),
            "grad_clip": hp["grad_clip"], "weight_decay_on": "weight matrices (not wte, wpe, "
                                                             "biases, LayerNorm)",
            "wpe_init": f"{args.wpe_init}, std {args.wpe_std}",
            "tokens_seen": hp["steps"] * tokens_per_step(hp),
            "epochs": round(hp["steps"] * tokens_per_step(hp) / len(train_ids), 2),
            "wall_time_s": round(train_time, 1), "threads": args.threads,
            "load_average_1_5_15min_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "losses": dict(losses, unit="nats/token",
                       note="train: a sample of train windows as many as the held-out ones; "
                            "256-token windows, every token after the first predicted"),
        "attention": {
            "measured_on": f"{len(sentences)} held-out sentences (12-60 tokens each), eager "
                           "attention, mean over query positions i >= 1",
            "best_prev_token": best_prev, "best_first_position": best_first,
            "targets": TARGETS,
            "prev_token": np.round(prev, 4).tolist(), "first_position": np.round(first, 4).tolist(),
            "induction": {"measured_on": "30 random tokens shown twice; weight from each query in "
                                         "the second copy on the token after its first occurrence",
                          "best_head": f"{il}.{ih}", "best_value": round(float(induction[il, ih]), 4),
                          "per_head": np.round(induction, 4).tolist()},
        },
        "sample": text,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "safetensors": safetensors.__version__, "numpy": np.__version__},
    }
    record["targets_met"] = {
        "prev_token_head": best_prev["value"] >= TARGETS["prev_token"],
        "first_position_head": best_first["value"] >= TARGETS["first_position"],
        "heldout_below_unigram_by_1_nat": losses["heldout"] < losses["unigram_baseline"] - 1.0}
    record["total_wall_time_s"] = round(time.time() - t_start, 1)
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    write_model_card(out, record)

    size = dir_size(out)
    log(f"wrote {out}: " + ", ".join(f"{f.name} {f.stat().st_size / 1e6:.2f} MB"
                                      for f in sorted(out.iterdir())) + f"; total {size / 2**20:.2f} MiB")
    ok = [size <= MAX_SIZE, losses["heldout"] < losses["unigram_baseline"] - 1.0,
          best_prev["value"] >= TARGETS["prev_token"],
          best_first["value"] >= TARGETS["first_position"]]
    names = ["size <= 10 MiB", "held-out well below unigram", "previous-token head", "position-0 head"]
    for name, good in zip(names, ok):
        log(f"  {'ok  ' if good else 'MISS'} {name}")
    log(f"total wall time {record['total_wall_time_s'] / 60:.1f} min")
    if not ok[0]:
        sys.exit(f"{out} is larger than 10 MiB")


if __name__ == "__main__":
    main()
