"""The command line under hostile input: never a traceback, always exit 0 or a clear exit 2."""

import json
import os
import subprocess
import sys

import pytest
from hostile import LONE_SURROGATES, hostile_texts

from gpt2np import cli
from gpt2np.cli import run as run_command_module


@pytest.fixture(scope="module")
def model_arg(small_text_model_dir):
    return ["--model", str(small_text_model_dir)]


def test_hostile_texts_in_process(model_arg, small_text_model_dir, capsys, monkeypatch):
    """Every hostile text that fits the context runs (exit 0, the ids are the tokenizer's); every
    other is refused (exit 2) for the reason it states: more tokens than the context."""
    import gpt2np
    model = gpt2np.load(small_text_model_dir)
    monkeypatch.setattr(run_command_module, "load", lambda name, **options: model)   # load once; everything else as run
    texts = hostile_texts()
    outcomes = {0: 0, 2: 0}
    for text in texts:
        status = cli.main([*model_arg, "--json", "--", text])
        out, err = capsys.readouterr()
        n = len(model.encode(text))
        assert "Traceback" not in err
        assert status == (0 if 0 < n <= model.config.n_positions else 2), (text, n, status, err)
        outcomes[status] += 1
        if status == 0:
            data = json.loads(out)
            assert data["ids"] == model.encode(text) and len(data["tokens"]) == len(data["ids"])
        else:
            assert err.startswith("gpt2np: error: ") and err.count("\n") == 1, (text, err)
            assert f"Too many tokens: {n}," in err, (text, err)
    assert outcomes[0] > 0 and outcomes[2] > 0          # both kinds of text are in the list
    print(f"\n{len(texts)} hostile texts through the CLI: {outcomes[0]} ran, {outcomes[2]} refused")


def test_round_trip_of_hostile_texts(small_text_model_dir):
    import gpt2np
    model = gpt2np.load(small_text_model_dir)
    for text in hostile_texts():
        ids = model.encode(text)
        assert model.tokenizer.decode(ids) == text


@pytest.mark.parametrize("text", ["", *LONE_SURROGATES, "word" + " word" * 100, "x" * 1_000_000])
def test_refused_texts(model_arg, capsys, text):
    assert cli.main([*model_arg, "--", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpt2np: error: ") and err.count("\n") == 1 and "Traceback" not in err


def run(args, stdin=b""):
    return subprocess.run([sys.executable, "-m", "gpt2np", *args], input=stdin, capture_output=True,
                          timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))


def test_invalid_utf8_argv(model_arg):
    r = run([*model_arg, b"caf\xe9 \xff\xfe".decode("utf-8", "surrogateescape")])
    assert r.returncode == 2 and b"not valid Unicode" in r.stderr and b"Traceback" not in r.stderr


@pytest.mark.parametrize("data, ok", [
    (b"NUL \x00 inside", True), (b"caf\xc3\xa9", True), (b"caf\xe9", False), (b"\xff\xfe\x00", False),
    (b"", False), ("🙂 emoji".encode(), True),
])
def test_stdin(model_arg, small_text_model_dir, data, ok):
    import gpt2np
    model = gpt2np.load(small_text_model_dir)
    r = run([*model_arg, "--json", "-"], stdin=data)
    assert b"Traceback" not in r.stderr
    if ok:
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["ids"] == model.encode(data.decode())
    else:
        assert r.returncode == 2 and r.stderr.count(b"\n") == 1
