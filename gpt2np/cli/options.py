"""What every subcommand of `python -m gpt2np` shares, defined once: the text argument (or - for
standard input), --model, --bos and --engine; reading standard input; the user error that exits
with status 2; how a token is printed; the progress bar on standard error."""

import sys

from ..api import DEFAULT_ENGINE, ENGINES
from ..errors import GPT2npError
from ..files.hub import KNOWN_MODELS
from ..files.tokenizer import quoted

DEFAULT_MODEL = "gpt2"


def add_text_argument(p, what):
    """The positional text: `what` (e.g. "the sentence to run"), or '-' for standard input."""
    p.add_argument("text", help=f"{what} ('-' reads it from standard input)")


def add_model_option(p):
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"a name ({', '.join(['demo', *KNOWN_MODELS])}), a Hub repo id, or a "
                        f"model directory (default: {DEFAULT_MODEL}; 'demo' needs no download)")


def add_bos_option(p, to):
    """--bos: prepend <|endoftext|> to `to` (e.g. "the tokens", "every window")."""
    p.add_argument("--bos", action="store_true", help=f"prepend <|endoftext|> to {to}")


def add_engine_option(p):
    p.add_argument("--engine", choices=list(ENGINES), default=DEFAULT_ENGINE,
                   help="'fast': the CPU schedule of engine.py; 'reference': model.py's plain math, "
                        f"to step through in a debugger; the same numbers (default: {DEFAULT_ENGINE})")


class UsageError(GPT2npError):
    pass


# A token as printed: in quotes so leading spaces and control characters show, byte escapes as
# \xc3 like the viewer (one home: gpt2np/files/tokenizer.py).
show = quoted


def read_stdin():
    """The text given as '-': standard input as UTF-8 without ONE final newline (\n or \r\n), the
    one `echo` adds (the shell's $(…) drops trailing newlines likewise): `echo "The trophy" |
    python -m gpt2np -` runs "The trophy", not "The trophy\n", whose prediction would be for what
    follows a newline. Only one is dropped: a text ending in a blank line keeps one newline."""
    data = sys.stdin.buffer.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GPT2npError(f"Standard input is not valid UTF-8: byte 0x{data[e.start]:02x} at offset "
                          f"{e.start}. Save the text as UTF-8.") from None
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


class ProgressBar:
    """A `progress(done, total)` callback (corpus.measure, patching.patch, ...): a tqdm bar on
    standard error, counting `unit`s; created at the first call. visible=False: no bar, only `done`
    kept (what an interrupted command reports)."""

    def __init__(self, unit, visible=True):
        self.bar, self.unit, self.visible, self.done = None, unit, visible, 0

    def __call__(self, done, total):
        self.done = done
        if not self.visible:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, unit=self.unit, file=sys.stderr,
                            dynamic_ncols=True, smoothing=0.1)
        self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()
