"""Hardening of the command line: the named hostile text cases, every hostile text with three
sets of options, hostile option values, invalid UTF-8 on argv and stdin, 1 MB of text, a closed
pipe, an unwritable --save path. Always exit 0 with a correct answer, or exit 2 with one line on
stderr that says what is wrong; never a traceback. Counts go to the end-of-run summary.

Model: `small_text_model_dir` (2 layers × 4 heads × 64 dims, context 64, GPT-2's tokenizer).
"""

import io
import json
import os
import subprocess
import sys

import pytest
from hostile import (
    INVALID_UTF8,
    LONE_SURROGATES,
    hostile_texts,
    named_text_cases,
    one_megabyte_text,
    record,
)

import gpt2np
from gpt2np import cli
from gpt2np.cli import run as run_command_module


@pytest.fixture(scope="module")
def model(small_text_model_dir):
    return gpt2np.load(small_text_model_dir)


@pytest.fixture
def run_cli(model, small_text_model_dir, capsys, monkeypatch):
    """run_cli(args, stdin=None) -> (status, out, err), in process, the model loaded once."""
    monkeypatch.setattr(run_command_module, "load", lambda name, **options: model)

    def run(args, stdin=None):
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            status = cli.main(["--model", str(small_text_model_dir), *args])
        except SystemExit as e:                   # argparse's own errors: usage + 'error:', exit 2
            status = e.code
        out, err = capsys.readouterr()
        return status, out, err
    return run


def judge(status, err, expect_phrase=None):
    """'ok' (exit 0) or 'refused' (exit 2, one line 'gpt2np: error: ...'); else ('bad', why)."""
    if "Traceback" in err:
        return ("bad", f"Traceback: {err[-300:]}")
    if status == 0 and expect_phrase is None:
        return "ok"
    if status == 2 and err.startswith("usage: gpt2np") and "\ngpt2np: error: " in err:
        return "refused"                             # argparse: the usage, then what is wrong
    if status == 2 and err.startswith("gpt2np: error: ") and err.count("\n") == 1 and len(err) > 30:
        if expect_phrase is None or expect_phrase in err:
            return "refused"
        return ("bad", f"message lacks {expect_phrase!r}: {err}")
    return ("bad", f"exit {status}, stderr {err[:300]!r}")


def tally(category, outcomes):
    bad = [o for o in outcomes if o not in ("ok", "refused")]
    record("cli", category, accepted=outcomes.count("ok"), refused=outcomes.count("refused"),
           failed=len(bad), tracebacks=sum("Traceback" in str(o) for o in bad))
    assert bad == [], bad[:5]
    return len(outcomes)


def test_named_text_cases(run_cli, model):
    """Each named hostile text case, through the CLI: runs with the tokenizer's ids, or is
    refused with the reason (the limit and the count for too many tokens)."""
    n_ctx = model.config.n_positions
    outcomes, lines = [], []
    for name, (text, phrase) in named_text_cases(n_ctx).items():
        status, out, err = run_cli(["--json", "--", text])
        o = judge(status, err, phrase)
        if phrase is None and o == "refused":
            o = ("bad", f"{name}: refused, but it must run: {err}")
        if o == "ok":
            ids = model.encode(text)
            if json.loads(out)["ids"] != ids:
                o = ("bad", f"{name}: ids differ")
        if name == "more tokens than the context" and o == "refused":
            n = len(model.encode(text))
            o = o if f"Too many tokens: {n}," in err else ("bad", err)
        if name == "the literal <|endoftext|>" and o == "ok":
            o = o if json.loads(out)["ids"] == [50256] else ("bad", out)
        outcomes.append(o)
        said = err.strip()[:90] or f"ran: {len(json.loads(out)['ids'])} tokens"
        lines.append(f"  {name:<30} exit {status}  {said}")
    print("\nthe named hostile text cases through the CLI:\n" + "\n".join(lines))
    tally("the named hostile text cases", outcomes)


OPTION_SETS = {
    "plain text output": [],
    "--bos --json": ["--bos", "--json"],
    "heatmap + top keys": ["--layer", "1", "--head", "3", "--query", "0", "--top-k", "3"],
}


def test_every_hostile_text_with_three_option_sets(run_cli, model):
    """~210 hostile texts × (plain output, --bos --json, the text heatmap with --query): the plain
    and heatmap printers meet every token string (control characters, RTL, markup)."""
    outcomes = []
    n_ctx = model.config.n_positions
    for text in hostile_texts():
        for name, options in OPTION_SETS.items():
            status, out, err = run_cli([*options, "--", text])
            ids = model.encode(text, bos="--bos" in options)
            o = judge(status, err, "Too many tokens" if len(ids) > n_ctx else None)
            if len(ids) <= n_ctx and o == "refused":
                o = ("bad", f"{text!r} with {name}: refused, but it fits the context: {err}")
            if o == "ok":
                if "--json" in options:
                    data = json.loads(out)
                    o = o if data["ids"] == ids and data["tokens"] == model.token_strings(ids) else ("bad", text)
                elif f"tokens ({len(ids)}): " not in out:
                    o = ("bad", f"{text!r}: token count not printed")
                elif options and "attention pattern" not in out:
                    o = ("bad", f"{text!r}: no heatmap")
                elif "\x1b" in out or "\x00" in out:
                    o = ("bad", f"{text!r}: a raw control character reached the terminal")
            outcomes.append(o)
    n = tally("hostile texts × 3 option sets", outcomes)
    print(f"\n{n} CLI runs of hostile texts: {outcomes.count('ok')} ran, {outcomes.count('refused')} refused")


BAD_OPTIONS = [
    ["--layer", "-1", "--head", "0"], ["--layer", "2", "--head", "0"], ["--layer", "0", "--head", "4"],
    ["--layer", "0", "--head", "-3"], ["--layer", "0"], ["--head", "1"], ["--query", "0"],
    ["--layer", "0", "--head", "0", "--query", "99"], ["--layer", "0", "--head", "0", "--query", "-1"],
    ["--top-k", "0"], ["--top-k", "-5"], ["--layer", "1e3", "--head", "0"], ["--layer", "x", "--head", "0"],
    ["--layer", "", "--head", "0"], ["--top-k", "1.5"], ["--layer", "99999999999999999999999", "--head", "0"],
    ["--save", "/nonexistent-dir/trace.npz"], ["--save", "/proc/trace.npz"],
    ["--no-such-option"], ["--json", "--json", "--model"],
]


def test_hostile_option_values(run_cli):
    """Out-of-range, non-numeric and missing option values, an unwritable --save: exit 2 with a
    message (argparse's usage + error for what it parses itself), never a traceback."""
    outcomes = []
    for options in BAD_OPTIONS:
        status, out, err = run_cli([*options, "Hello world"])
        o = judge(status, err)
        outcomes.append(("bad", f"{options}: accepted") if o == "ok" else o)
    status, out, err = run_cli(["--top-k", "1000000000", "--json", "Hello"])    # clamps, runs
    outcomes.append(judge(status, err))
    assert len(json.loads(out)["next_token"]) == 50257
    n = tally("hostile option values", outcomes)
    print(f"\n{n} hostile option sets: {outcomes.count('refused')} refused with exit 2")


def test_save_reports_the_file_it_wrote(run_cli, tmp_path):
    status, out, err = run_cli(["--save", str(tmp_path / "trace"), "Hello"])
    assert status == 0 and (tmp_path / "trace.npz").is_file() and f"to {tmp_path / 'trace.npz'}" in out
    status, out, err = run_cli(["--save", str(tmp_path / "missing" / "t.npz"), "Hello"])
    assert status == 2 and "Cannot save the trace to" in err and "No such file" in err
    record("cli", "hostile option values", accepted=1, refused=1)


def test_invalid_utf8_and_lone_surrogates(run_cli):
    """Bytes that are not UTF-8 on the command line (Python hands them over as surrogate escapes)
    and on stdin; lone surrogates: exit 2, one line, 'not valid Unicode' / 'not valid UTF-8'."""
    outcomes = []
    for raw in INVALID_UTF8:
        as_arg = (b"text " + raw).decode("utf-8", "surrogateescape")
        outcomes.append(judge(*run_cli(["--", as_arg])[::2], "not valid Unicode"))
        outcomes.append(judge(*run_cli(["-"], stdin=b"text " + raw)[::2], "not valid UTF-8"))
    for text in LONE_SURROGATES:
        outcomes.append(judge(*run_cli(["--", text])[::2], "not valid Unicode"))
    n = tally("invalid UTF-8 (argv, stdin), lone surrogates", outcomes)
    print(f"\n{n} invalid-UTF-8 / lone-surrogate inputs: all exit 2 with one line")


def test_one_megabyte_in_process(run_cli, model):
    text = one_megabyte_text()
    n = len(model.tokenizer.encode(text))
    outcomes = [judge(*run_cli(["--", text])[::2], f"Too many tokens: {n},"),
                judge(*run_cli(["-"], stdin=text.encode())[::2], f"Too many tokens: {n},")]
    tally("1 MB of text (argv, stdin)", outcomes)


# -- real processes: argv bytes, 1 MB on stdin, a closed pipe -------------------------------------------
def run(args, stdin=b"", **kw):
    return subprocess.run([sys.executable, "-m", "gpt2np", *args], input=stdin, capture_output=True,
                          timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"), **kw)


def test_real_process_invalid_argv_and_one_megabyte_stdin(small_text_model_dir, model):
    """Linux caps one argument at 128 KB, so 1 MB reaches the CLI through stdin ('-')."""
    r = run(["--model", str(small_text_model_dir), "text \udce9\udcff"])   # bytes e9 ff in argv
    assert r.returncode == 2 and b"not valid Unicode" in r.stderr and r.stderr.count(b"\n") == 1
    text = one_megabyte_text()
    r2 = run(["--model", str(small_text_model_dir), "-"], stdin=text.encode())
    n = len(model.tokenizer.encode(text))
    assert r2.returncode == 2 and r2.stderr.count(b"\n") == 1, r2.stderr[-300:]
    assert f"Too many tokens: {n}, but small-text-2x4x64 has a context of 64 tokens".encode() in r2.stderr
    assert b"Traceback" not in r.stderr + r2.stderr
    record("cli", "1 MB of text (argv, stdin)", refused=1)
    record("cli", "invalid UTF-8 (argv, stdin), lone surrogates", refused=1)


def test_closed_pipe_stops_quietly(small_text_model_dir):
    """`python -m gpt2np ... | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    p = subprocess.Popen([sys.executable, "-m", "gpt2np", "--model", str(small_text_model_dir),
                          "--layer", "0", "--head", "0", "word " * 60],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=120) == 141 and err == b"", err[-500:]
    record("cli", "closed pipe (| head)", accepted=1)
