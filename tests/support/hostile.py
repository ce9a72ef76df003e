"""Hostile and malformed text inputs, shared by the command-line and API hardening tests."""

MARKUP = [
    "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{{ 7*7 }}", "{% raw %}",
    "${7*7}", "javascript:alert(1)", "<svg/onload=alert(1)>", "</textarea><b>bold</b>",
    "' OR 1=1 --", "\\u003cscript\\u003e", "<!--", "]]>", "&lt;&amp;&gt;", "`rm -rf /`",
]
UNICODE = [
    "🙂", "👩‍👩‍👧‍👦 family", "e\u0301\u0301\u0301 combining", "Z̴̡̛͔̈a̷̢͎͑l̶̰̈g̵̡̛o̶̧̊",
    "مرحبا بالعالم", "שלום עולם", "\u202eRTL override\u202c", "\u200b\u200c\u200d zero width",
    "\ufeffBOM", "\U0010ffff max code point", "中文字符测试", "ｆｕｌｌｗｉｄｔｈ", "𝕄𝕒𝕥𝕙",
]
CONTROL = [
    "\x00", "a\x00b", "\x01\x02\x03\x1b[31mred\x1b[0m", "tab\tnew\nline\rcr", "\x7f\x85\x9f",
    "\n", "\t", "\r\n\r\n",
]
SPECIAL = [
    "<|endoftext|>", "<|endoftext|><|endoftext|>", "Hello<|endoftext|>world", "<|endoftext",
    "<|im_start|>", " ", "   ", "a", ".", "0", "-1", "null", "None", "NaN", "true", "[]", "{}",
]
BASES = MARKUP + UNICODE + CONTROL + SPECIAL


def hostile_texts():
    """≈ 200 inputs: each base, plus it padded, doubled and embedded in a sentence."""
    out = []
    for b in BASES:
        out += [b, b + b, f"The {b} is too big.", f" {b} "]
    return out


LONE_SURROGATES = ["\ud800", "abc\udfff", "\udcff\udcfe invalid utf-8 as Python decodes it"]


# -- more hostile input for the *_hostile*, test_viewer_server and test_weights_corrupt modules ----------
# Bytes that are not UTF-8: a stray Latin-1 byte, a BOM of UTF-16, an overlong '/', a UTF-8-encoded
# surrogate, a code point above U+10FFFF, a lone continuation byte, a character cut in half.
INVALID_UTF8 = [b"caf\xe9", b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80",
                b"abc\xe2\x82"]
# Lone surrogates as JSON escapes: JSON itself allows them; Python decodes them to a str that is
# not valid Unicode. A valid pair (🙂) for contrast is not in this list.
JSON_LONE_SURROGATES = ['"\\ud800"', '"abc\\udfff"', '"\\udc00\\ud800"', '"x\\ud83d"', '"\\ud83dx"']


def one_megabyte_text():
    """1,000,000 characters of ordinary prose ('1 MB of text')."""
    line = "The trophy doesn't fit in the suitcase because it is too big. "
    return (line * (1_000_000 // len(line) + 1))[:1_000_000]


# -- the tally: every hostile input counted, printed at the end of the run ------------------------
import json as _json  # noqa: E402
from collections import defaultdict as _defaultdict  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

TALLY = _defaultdict(lambda: {"inputs": 0, "accepted": 0, "refused": 0, "failed": 0,
                              "5xx": 0, "tracebacks": 0})
FIGURES = {}


def record(channel, category, *, accepted=0, refused=0, failed=0, five_xx=0, tracebacks=0):
    """Count one or more inputs. channel: 'cli' or 'api' (hostile inputs), or 'weights', 'browser',
    'load' (the concurrency run: ordinary requests, counted apart). Every input is either accepted
    (ran, answer checked) or refused (a clear JSON 4xx / one line and exit 2); `failed` counts
    every other outcome (a crash, a 5xx, a traceback, a wrong answer, an unclear message), of
    which 5xx and tracebacks are also counted apart. The tests assert failed == 0."""
    row = TALLY[(channel, category)]
    row["inputs"] += accepted + refused + failed
    row["accepted"] += accepted
    row["refused"] += refused
    row["failed"] += failed
    row["5xx"] += five_xx
    row["tracebacks"] += tracebacks


class _Summary:
    def pytest_terminal_summary(self, terminalreporter):
        if not TALLY and not FIGURES:
            return
        tr = terminalreporter
        tr.section("hardening: hostile inputs and figures")
        totals = _defaultdict(lambda: _defaultdict(int))
        for (channel, category), row in sorted(TALLY.items()):
            tr.write_line(f"  {channel:<7} {category:<46} " + "  ".join(f"{k} {v}" for k, v in row.items()))
            for k, v in row.items():
                totals[channel][k] += v
                if channel in ("cli", "api"):
                    totals["hostile inputs, CLI + API"][k] += v
                totals["everything"][k] += v
        for channel in sorted(totals, key=lambda c: (c in ("hostile inputs, CLI + API", "everything"), c)):
            tr.write_line(f"  TOTAL {channel:<48} " + "  ".join(f"{k} {v}" for k, v in totals[channel].items()))
        for name, value in FIGURES.items():
            tr.write_line(f"  {name}: {_json.dumps(value, ensure_ascii=False)}")
        out = _Path(__file__).resolve().parents[2] / "test-artifacts"
        out.mkdir(exist_ok=True)
        (out / "hardening.json").write_text(_json.dumps(
            {"tally": {f"{c}/{k}": v for (c, k), v in sorted(TALLY.items())},
             "totals": totals, "figures": FIGURES}, indent=1, ensure_ascii=False))


def install_summary(config):
    """Register the end-of-run summary (conftest.py does, once per run; it prints only when a
    hostile-input test counted something)."""
    if not config.pluginmanager.has_plugin("gpt2np-hardening-summary"):
        config.pluginmanager.register(_Summary(), "gpt2np-hardening-summary")


def named_text_cases(n_ctx):
    """The named hostile text cases: (text, None) when it must run, (text, phrase) when it must
    be refused with a message containing phrase. `n_ctx` is the model's context."""
    over = "word " * (n_ctx + 10)
    return {
        "empty": ("", "The text is empty"),
        "whitespace only": (" \t\n  \r\n", None),
        "single character": ("a", None),
        "more tokens than the context": (over, f"context of {n_ctx} tokens"),
        "control characters": ("\x01\x02\x1b[31mred\x1b[0m\x7f\x85\x9b", None),
        "NUL bytes": ("a\x00b\x00\x00c", None),
        "lone surrogate": ("abc\ud800def", "not valid Unicode"),
        "emoji": ("🙂 👩‍👩‍👧‍👦 🏳️‍🌈", None),
        "combining characters": ("e\u0301\u0301 n\u0303 Z̴̡̛͔̈a̷̢͎͑", None),
        "right-to-left text": ("مرحبا بالعالم שלום \u202eevil\u202c", None),
        "the literal <|endoftext|>": ("<|endoftext|>", None),
        "1 MB of text": (one_megabyte_text(), "Too many tokens"),
    }
