"""How the command line prints tokens and reads standard input (issue 20, §4): a byte token is
printed `"\\xc3"` as the viewer shows it, not `"\\\\xc3"`; `echo "…" | python -m gpt2np -` runs the
text without the newline echo adds (one newline only)."""

import json
import os
import subprocess
import sys

import pytest

import gpt2np
from gpt2np.files.tokenizer import quoted

# Texts whose first character a byte-level BPE may leave as single bytes (GPT-2's does for the
# rarer ones); the test takes the first that the demo's tokenizer splits.
BYTE_TEXTS = ("ñandú", "ꙮ eye", "\u0f00 om", "𝒜 script")


def byte_text(model):
    """(text, its first token's string): the first BYTE_TEXTS whose first token is a lone byte."""
    for text in BYTE_TEXTS:
        first = model.token_strings(model.encode(text))[0]
        if first == "\\x%02x" % text.encode()[0]:
            return text, first
    raise AssertionError(f"the demo's tokenizer keeps the first character of each of {BYTE_TEXTS}")


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "gpt2np", *args], capture_output=True, text=True,
                          input=stdin, timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))


@pytest.mark.parametrize("token, printed", [
    ("\\xc3", '"\\xc3"'),                 # a byte of a split character: one backslash, as on the page
    (" trophy", '" trophy"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("a\nb\tc\r", '"a\\nb\\tc\\r"'),
    ("\x01\x7f\x85", '"\\x01\\x7f\\x85"'),   # control characters as the viewer's text.js shows them
    ("é€", '"é€"'),
])
def test_quoted_by_hand(token, printed):
    assert quoted(token) == printed


def test_byte_tokens_print_as_on_the_page():
    model = gpt2np.load("demo")
    text, first = byte_text(model)
    tokens = model.token_strings(model.encode(text))
    r = run("--model", "demo", text)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("tokens ("))
    assert line == f"tokens ({len(tokens)}): " + " ".join(f'{i}:"{t}"' for i, t in enumerate(tokens))
    assert f'0:"{first}"' in line and "\\\\" not in r.stdout


@pytest.mark.parametrize("stdin, text", [
    ("The trophy\n", "The trophy"),                  # echo's newline: dropped
    ("The trophy\r\n", "The trophy"),
    ("The trophy", "The trophy"),                    # none to drop
    ("The trophy\n\n", "The trophy\n"),              # only one
])
def test_standard_input_loses_one_final_newline(stdin, text):
    model = gpt2np.load("demo")
    r = run("--model", "demo", "--json", "-", stdin=stdin)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ids"] == model.encode(text)


def test_generate_reads_standard_input_the_same_way():
    model = gpt2np.load("demo")
    r = run("generate", "--model", "demo", "--json", "--greedy", "--tokens", "1", "-",
            stdin="The trophy\n")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    prompt = model.encode("The trophy")
    assert out["n_prompt"] == len(prompt) and out["ids"][:len(prompt)] == prompt
