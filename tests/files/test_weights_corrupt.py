"""Hardening of loading: every named corrupt-weights case, each through three doors.

For each case a fresh copy of a good model directory is broken, then:
  gpt2np.load      -> GPT2npError, one line, naming the file (its full path) and the problem;
  python -m gpt2np -> exit 2, one line 'gpt2np: error: ...' on stderr, no traceback;
  python -m viewer -> exit 2, 'error: ...' on stderr (the viewer refuses to start).
tests/files/test_weights.py holds the detailed checks of each message; this file makes sure the named list
is covered whole, adds the cases it lacks (more cut points, header fields out of bounds,
a directory without a tokenizer through the CLI), and counts them.
"""

import json
import shutil

import numpy as np
import pytest
from hostile import FIGURES, record
from modelfiles import GOOD_WEIGHTS_CONFIG as CFG
from modelfiles import save_tensors

import gpt2np
from gpt2np import cli
from viewer.cli import main as viewer_main

WEIGHTS, CONFIG = "model.safetensors", "config.json"




def header_of(raw):
    n = int.from_bytes(raw[:8], "little")
    return n, json.loads(raw[8:8 + n])


def with_header(raw, edit):
    """The same file with edit(header) applied (data kept, header re-padded to 8 bytes)."""
    n, header = header_of(raw)
    edit(header)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    return len(new).to_bytes(8, "little") + new + raw[8 + n:]


def tensors(d):
    from safetensors.numpy import load_file
    return load_file(str(d / WEIGHTS))


def truncate(at):
    def breaker(d):
        raw = (d / WEIGHTS).read_bytes()
        n, _ = header_of(raw)
        cut = {"1 byte": 1, "7 bytes": 7, "8 bytes": 8, "9 bytes": 9, "mid header": 8 + n // 2,
               "header end": 8 + n, "1 data byte": 8 + n + 1, "mid data": (8 + n + len(raw)) // 2,
               "last byte missing": len(raw) - 1}[at]
        (d / WEIGHTS).write_bytes(raw[:cut])
    return breaker


def header_edit(edit):
    def breaker(d):
        (d / WEIGHTS).write_bytes(with_header((d / WEIGHTS).read_bytes(), edit))
    return breaker


def set_offsets(key, f):
    def edit(h):
        h[key]["data_offsets"] = f(*h[key]["data_offsets"])
    return edit


def tensor_edit(edit):
    def breaker(d):
        t = tensors(d)
        edit(t)
        save_tensors(t, d / WEIGHTS)
    return breaker


def raw_length(n):
    def breaker(d):
        raw = (d / WEIGHTS).read_bytes()
        (d / WEIGHTS).write_bytes(n.to_bytes(8, "little") + raw[8:])
    return breaker


def write(name, data):
    def breaker(d):
        (d / name).write_bytes(data) if isinstance(data, bytes) else (d / name).write_text(data)
    return breaker


def config_edit(**change):
    return write(CONFIG, json.dumps(dict(CFG, **change)))


def wrong_dtype(dtype):
    return tensor_edit(lambda t: t.__setitem__("wte.weight", t["wte.weight"].astype(dtype)))


# (the case's name, case, file, phrase in the message, breaker)
CASES = [
    ("missing file", "no model.safetensors", WEIGHTS, "file not found",
     lambda d: (d / WEIGHTS).unlink()),
    ("missing file", "a directory named model.safetensors", WEIGHTS, "file not found",
     lambda d: ((d / WEIGHTS).unlink(), (d / WEIGHTS).mkdir())),
    ("missing file", "no config.json", CONFIG, "no config.json", lambda d: (d / CONFIG).unlink()),
    ("empty file", "model.safetensors of 0 bytes", WEIGHTS, "not a valid safetensors file", write(WEIGHTS, b"")),
    ("empty file", "config.json of 0 bytes", CONFIG, "not valid JSON", write(CONFIG, b"")),
    *[("truncated file", f"cut after {at}", WEIGHTS, "truncated or corrupt", truncate(at))
      for at in ("1 byte", "7 bytes", "8 bytes", "9 bytes", "mid header", "header end", "1 data byte",
                 "mid data", "last byte missing")],
    ("corrupted header JSON", "garbage in the JSON", WEIGHTS, "not a valid safetensors file",
     lambda d: (d / WEIGHTS).write_bytes((lambda r: r[:8] + b"{not json!!}" + r[20:])((d / WEIGHTS).read_bytes()))),
    ("corrupted header JSON", "header is a JSON list", WEIGHTS, "not a valid safetensors file",
     lambda d: (d / WEIGHTS).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00[]      ")),
    ("corrupted header JSON", "header not UTF-8", WEIGHTS, "not a valid safetensors file",
     lambda d: (d / WEIGHTS).write_bytes((lambda r: r[:9] + b"\xff\xfe" + r[11:])((d / WEIGHTS).read_bytes()))),
    ("corrupted header JSON", "a tensor entry without dtype", WEIGHTS, "not a valid safetensors file",
     header_edit(lambda h: h["wte.weight"].pop("dtype"))),
    ("header points outside the file", "offsets past the end", WEIGHTS, "not a valid safetensors file",
     header_edit(set_offsets("wte.weight", lambda b, e: [b + 10**9, e + 10**9]))),
    ("header points outside the file", "header length 2^40", WEIGHTS, "not a valid safetensors file",
     raw_length(2**40)),
    ("header points outside the file", "header length 2^64 - 1", WEIGHTS, "not a valid safetensors file",
     raw_length(2**64 - 1)),
    ("header points outside the file", "negative offsets", WEIGHTS, "not a valid safetensors file",
     header_edit(set_offsets("wte.weight", lambda b, e: [-8, e]))),
    ("header points outside the file", "offsets that overlap", WEIGHTS, "not a valid safetensors file",
     header_edit(set_offsets("wpe.weight", lambda b, e: [0, e - b]))),
    ("header points outside the file", "shape larger than its bytes", WEIGHTS, "not a valid safetensors file",
     header_edit(lambda h: h["ln_f.bias"].__setitem__("shape", [10**6]))),
    ("wrong dtype", "wte.weight int32", WEIGHTS, "has dtype I32", wrong_dtype(np.int32)),
    ("wrong dtype", "wte.weight uint8", WEIGHTS, "has dtype U8", wrong_dtype(np.uint8)),
    ("wrong dtype", "wte.weight bool", WEIGHTS, "has dtype BOOL", wrong_dtype(np.bool_)),
    ("wrong shape", "c_attn transposed", WEIGHTS, "expected [32, 96], found [96, 32]",
     tensor_edit(lambda t: t.__setitem__("h.1.attn.c_attn.weight", t["h.1.attn.c_attn.weight"].T.copy()))),
    ("wrong shape", "a bias with one extra value", WEIGHTS, "h.0.ln_1.bias expected [32], found [33]",
     tensor_edit(lambda t: t.__setitem__("h.0.ln_1.bias", np.zeros(33, np.float32)))),
    ("wrong shape", "a scalar where a matrix belongs", WEIGHTS, "wpe.weight expected [16, 32], found []",
     tensor_edit(lambda t: t.__setitem__("wpe.weight", np.array(1.0, np.float32)))),
    ("missing tensor", "ln_f.weight missing", WEIGHTS, "missing tensors: ln_f.weight",
     tensor_edit(lambda t: t.pop("ln_f.weight"))),
    ("missing tensor", "all of block 1 missing", WEIGHTS, "missing tensors: h.1.",
     tensor_edit(lambda t: [t.pop(k) for k in list(t) if k.startswith("h.1.")])),
    ("extra unknown tensor", "h.0.attn.rotary.weight", WEIGHTS, "tensors gpt2np does not know: h.0.attn.rotary.weight",
     tensor_edit(lambda t: t.__setitem__("h.0.attn.rotary.weight", np.zeros(4, np.float32)))),
    ("extra unknown tensor", "a third block h.2.*", WEIGHTS, "tensors gpt2np does not know: h.2.",
     tensor_edit(lambda t: t.update({k.replace("h.1.", "h.2."): v for k, v in list(t.items())
                                     if k.startswith("h.1.")}))),
    ("config disagrees with the tensors", "n_embd 64", WEIGHTS, "config.json and model.safetensors disagree",
     config_edit(n_embd=64)),
    ("config disagrees with the tensors", "n_layer 3", WEIGHTS, "missing tensors: h.2.ln_1.weight",
     config_edit(n_layer=3)),
    ("config disagrees with the tensors", "n_layer 1", WEIGHTS, "tensors gpt2np does not know: h.1.",
     config_edit(n_layer=1)),
    ("config disagrees with the tensors", "vocab_size 65", WEIGHTS, "wte.weight expected [65, 32], found [64, 32]",
     config_edit(vocab_size=65)),
    ("config disagrees with the tensors", "n_positions 32", WEIGHTS, "wpe.weight expected [32, 32], found [16, 32]",
     config_edit(n_positions=32)),
    ("config disagrees with the tensors", "n_head 3 (does not divide n_embd)", CONFIG, "not divisible by n_head",
     config_edit(n_head=3)),
    ("config disagrees with the tensors", "n_layer as a string", CONFIG, "n_layer must be a positive integer",
     config_edit(n_layer="2")),
    ("directory without a tokenizer", "tokenizer.json that is not JSON", "tokenizer.json",
     "the tokenizer files cannot be read", write("tokenizer.json", "{oops")),
]


@pytest.mark.parametrize("named_case, case, file, phrase, breaker", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_corrupt_weights_case(good_weights_dir, tmp_path, capsys, named_case, case, file, phrase, breaker):
    d = shutil.copytree(good_weights_dir, tmp_path / "m")
    breaker(d)
    with pytest.raises(gpt2np.GPT2npError) as info:
        gpt2np.load(d)
    message = str(info.value)
    named = str(d / file) if file != "tokenizer.json" else str(d)
    assert named in message, f"the file is not named: {message}"
    assert phrase in message, f"{phrase!r} not in: {message}"
    assert "\n" not in message and "Traceback" not in message and len(message) < 700

    assert cli.main(["--model", str(d), "hello"]) == 2               # python -m gpt2np
    err = capsys.readouterr().err
    assert err == f"gpt2np: error: {message}\n"
    with pytest.raises(SystemExit) as exit_info:                      # python -m viewer
        viewer_main(["--model", str(d)], serve=False)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err == f"error: {message}\n"
    record("weights", "corrupt weights (load, CLI, viewer)", refused=1)
    FIGURES.setdefault("corrupt_weights_cases", {}).setdefault(named_case, 0)
    FIGURES["corrupt_weights_cases"][named_case] += 1


def test_every_named_corrupt_case_is_covered():
    named = {"missing file", "empty file", "truncated file", "corrupted header JSON",
             "header points outside the file", "wrong dtype", "wrong shape", "missing tensor",
             "extra unknown tensor", "config disagrees with the tensors", "directory without a tokenizer"}
    covered = {c[0] for c in CASES} | {"directory without a tokenizer"}     # + the test below
    assert covered == named
    assert sum(c[0] == "truncated file" for c in CASES) >= 5


def test_directory_without_a_tokenizer(good_weights_dir, tmp_path, capsys):
    """It loads and runs token ids; text is a clear error (API, CLI exit 2, viewer 400)."""
    d = shutil.copytree(good_weights_dir, tmp_path / "m")
    model = gpt2np.load(d)
    assert model.tokenizer is None and model.run([1, 2, 3]).n_tokens == 3
    with pytest.raises(gpt2np.GPT2npError, match="no tokenizer .*pass token ids instead of text"):
        model.run("hello")
    assert cli.main(["--model", str(d), "hello"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpt2np: error: This model has no tokenizer") and err.count("\n") == 1
    assert "Traceback" not in err
    from viewer import create_app
    c = create_app({"MODEL": str(d)}).test_client()
    r = c.post("/api/run", json={"text": "hello"})
    assert r.status_code == 400 and "no tokenizer" in r.get_json()["error"]
    assert c.post("/api/run", json={"ids": [1, 2, 3]}).status_code == 200
    record("weights", "corrupt weights (load, CLI, viewer)", refused=1)
    FIGURES.setdefault("corrupt_weights_cases", {}).setdefault("directory without a tokenizer", 0)
    FIGURES["corrupt_weights_cases"]["directory without a tokenizer"] += 2
