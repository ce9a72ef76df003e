"""Text <-> token ids with the `tokenizers` library, plus a readable string for every token.

GPT-2 uses byte-level BPE: every token is a sequence of bytes, written in `vocab.json` with a
printable stand-in character per byte (a space is `Ġ`). `token_strings` turns each token back into
the text it stands for (" trophy" keeps its leading space); a token that holds only part of a
multi-byte character is shown with `\\x..` escapes for its bytes instead of a replacement mark.
`quoted` is how the command line prints one: in double quotes, `\\x..` as the viewer shows it.
"""

from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from ..errors import GPT2npError

ENDOFTEXT = "<|endoftext|>"
_NAMED = {'"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quoted(token):
    """A token string as printed: in double quotes, so leading spaces show; a quote, newline, tab
    and carriage return as \\" \\n \\t \\r; other control characters as \\x.. (as the viewer shows
    them, viewer/static/text.js). A byte escape of `token_strings` stays as it is, \\xc3 (not
    doubled as JSON or repr would): one rendering in the CLI, the viewer and the docs."""
    def one(ch):
        code = ord(ch)
        if ch in _NAMED:
            return _NAMED[ch]
        if code < 0x20 or 0x7F <= code < 0xA0:
            return f"\\x{code:02x}"
        return ch
    return '"' + "".join(map(one, token)) + '"'


@lru_cache(maxsize=1)
def byte_decoder():
    """The inverse of GPT-2's byte -> printable-character table (OpenAI's `bytes_to_unicode`)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, n = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:                       # unprintable bytes are shifted above 255
            chars[b] = chr(256 + n)
            n += 1
    return {c: b for b, c in chars.items()}


class Tokenizer:
    """encode(text) -> ids, decode(ids) -> text, token_strings(ids) -> one display string each."""

    def __init__(self, hf_tokenizer):
        self._tok = hf_tokenizer
        self.endoftext_id = hf_tokenizer.token_to_id(ENDOFTEXT)

    @classmethod
    def from_dir(cls, directory):
        """tokenizer.json, or else vocab.json + merges.txt, from a model directory."""
        directory = Path(directory)
        tj, vocab, merges = (directory / n for n in ("tokenizer.json", "vocab.json", "merges.txt"))
        try:
            if tj.is_file():
                return cls(HFTokenizer.from_file(str(tj)))
            if vocab.is_file() and merges.is_file():
                tok = HFTokenizer(models.BPE.from_file(str(vocab), str(merges)))
                tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
                tok.decoder = decoders.ByteLevel()
                if tok.token_to_id(ENDOFTEXT) is not None:
                    tok.add_special_tokens([ENDOFTEXT])
                return cls(tok)
        except Exception as e:  # tokenizers raises plain Exception subclasses
            raise GPT2npError(f"{directory}: the tokenizer files cannot be read ({e}). "
                              "Re-download tokenizer.json (or vocab.json and merges.txt).") from None
        return None

    @property
    def vocab_size(self):
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text):
        """str -> list of ids. The literal text `<|endoftext|>` becomes the special token."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids):
        return self._tok.decode(list(map(int, ids)), skip_special_tokens=False)

    def token_string(self, token_id):
        """One token's text: bytes decoded as UTF-8, stray bytes of a split character as \\x.."""
        piece = self._tok.id_to_token(int(token_id))
        if piece is None:
            return f"<id {int(token_id)}>"
        table = byte_decoder()
        if piece == ENDOFTEXT or not all(c in table for c in piece):
            return piece                # a special token, or a tokenizer that is not byte-level
        return bytes(table[c] for c in piece).decode("utf-8", errors="backslashreplace")

    def token_strings(self, ids):
        return [self.token_string(i) for i in ids]
