"""Corpus mode's input: texts from files, directories or standard input, cut into documents and
token windows (a window never spans two documents)."""

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import GPT2npError
from ...files.tokenizer import ENDOFTEXT


# -- texts, documents, windows -------------------------------------------------------------------
def read_sources(path, errors="strict", stdin=None):
    """The texts of a file, of every *.txt file below a directory (sorted), or of standard input
    ("-"), as [(name, text)]. errors: "strict" refuses invalid UTF-8, "replace" puts U+FFFD there.
    Empty files and binary data (a NUL byte) are refused."""
    if str(path) == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return [("<stdin>", decode_text("standard input", stream.read(), errors))]
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise GPT2npError(f"{path}: the directory has no *.txt file. Give a text file, a "
                              "directory of .txt files, or - for standard input.")
    elif path.is_file():
        files = [path]
    else:
        raise GPT2npError(f"{path}: no such file or directory. Give a text file, a directory of "
                          ".txt files, or - for standard input.")
    sources = []
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as e:
            raise GPT2npError(f"{f}: cannot read it ({e.strerror or e}).") from None
        sources.append((str(f.relative_to(path)) if path.is_dir() else str(f),
                        decode_text(str(f), data, errors)))
    return sources


def decode_text(name, data, errors="strict"):
    """Bytes of a text file -> str, or one clear error for empty, binary or non-UTF-8 data."""
    if not data.strip():
        raise GPT2npError(f"{name} is empty{'' if not data else ' (only whitespace)'}: give a text "
                          "of at least two tokens.")
    if b"\0" in data:
        raise GPT2npError(f"{name} looks like binary data (a NUL byte at offset {data.index(0)}), "
                          "not text: give a UTF-8 text file.")
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise GPT2npError(f"{name} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset "
                          f"{e.start}. Save it as UTF-8, or pass --errors replace to read such "
                          "bytes as U+FFFD.") from None


@dataclass
class Corpus:
    """Token ids of every document and the windows cut from them (document, first, end token)."""
    names: list            # one per source text
    documents: list        # (source index, document index in the source, ids int32 [n])
    windows: list          # (document index, start, end): text tokens start..end-1
    bos_id: int | None     # prepended to every window when not None
    skipped: int           # windows of fewer than 2 tokens (statistics need 2)

    def ids(self, k):
        """The token ids of window k as the model sees them ([<|endoftext|>] + text). -> int64 [T]"""
        d, a, b = self.windows[k]
        text = self.documents[d][2][a:b].astype(np.int64)
        return text if self.bos_id is None else np.concatenate([[self.bos_id], text])

    def fingerprint(self, extra):
        """sha256 of `extra` (model, settings) and every window's ids: the same means the same run."""
        h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
        for k in range(len(self.windows)):
            h.update(np.int64(k).tobytes() + self.ids(k).tobytes())
        return h.hexdigest()


def split(model, texts, window, stride=None, bos=False):
    """Texts -> Corpus. texts: strings or (name, string) pairs. Each window has `window` tokens,
    <|endoftext|> included with bos; the next starts `stride` text tokens later (default: where
    the last one ended); the last window of a document ends with it and may be shorter."""
    if model.tokenizer is None:
        raise GPT2npError(f"{model.info.name} has no tokenizer, and corpus mode reads text: use a "
                          "model directory with tokenizer.json.")
    n_ctx = model.config.n_positions
    if window > n_ctx:
        raise GPT2npError(f"--window {window} is longer than {model.info.name}'s context of "
                          f"{n_ctx} tokens: give --window {n_ctx} or less.")
    if window < 2 + bos:
        raise GPT2npError(f"--window {window} is too short: the statistics need 2 tokens per "
                          f"window{' besides <|endoftext|>' if bos else ''}.")
    per_window = window - bos
    stride = per_window if stride is None else stride
    if stride < 1:
        raise GPT2npError(f"--stride {stride} must be at least 1 token.")
    names, documents, windows, skipped = [], [], [], 0
    for s, item in enumerate(texts):
        name, text = item if isinstance(item, tuple) else (f"text {s}", item)
        names.append(name)
        pieces = [p for p in text.split(ENDOFTEXT) if p.strip()]
        for j, piece in enumerate(pieces):
            ids = np.asarray(model.encode(piece), dtype=np.int32)
            d = len(documents)
            documents.append((s, j, ids))
            start = 0
            while True:
                end = min(start + per_window, len(ids))
                if end - start + bos >= 2:
                    windows.append((d, start, end))
                else:
                    skipped += 1
                if end >= len(ids):
                    break
                start += stride
    if not windows:
        raise GPT2npError("The input has no window of at least 2 tokens: give more text.")
    return Corpus(names, documents, windows, model.bos_id() if bos else None, skipped)
