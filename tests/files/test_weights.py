"""Loading checkpoints: every bad file gives one clear paragraph naming the file and the problem.

Each case is checked through the API (GPT2npError with the right words) and through the command
line (exit status 2, one line on stderr, no traceback).
"""

import json
import shutil

import numpy as np
import pytest
from modelfiles import GOOD_WEIGHTS_CONFIG as CFG
from modelfiles import save_tensors

import gpt2np
from gpt2np import cli


@pytest.fixture
def model_dir(good_weights_dir, tmp_path):
    """A fresh copy of a good model directory, to break."""
    return shutil.copytree(good_weights_dir, tmp_path / "m")


def rewrite_header(path, edit):
    """Apply edit(header dict) to a safetensors file's JSON header, keeping the data."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    edit(header)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n:])


def tensors_of(path):
    from safetensors.numpy import load_file
    return load_file(str(path))


def expect_error(directory, *phrases, capsys=None):
    with pytest.raises(gpt2np.GPT2npError) as info:
        gpt2np.load(directory)
    message = str(info.value)
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in: {message}"
    assert "\n" not in message
    if capsys is not None:   # the command line: exit 2, one line, no traceback
        assert cli.main(["--model", str(directory), "hello"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gpt2np: error: ") and err.count("\n") == 1
        assert "Traceback" not in err
    return message


def test_good_weights_directory_loads(good_weights_dir):
    model = gpt2np.load(good_weights_dir)
    assert model.config.n_layer == 2 and model.tokenizer is None


def test_missing_weights_file(model_dir, capsys):
    (model_dir / "model.safetensors").unlink()
    (model_dir / "pytorch_model.bin").write_bytes(b"x")
    expect_error(model_dir, "model.safetensors: file not found", "pytorch_model.bin", capsys=capsys)


def test_missing_config(model_dir, capsys):
    (model_dir / "config.json").unlink()
    expect_error(model_dir, "no config.json", capsys=capsys)


def test_empty_file(model_dir, capsys):
    (model_dir / "model.safetensors").write_bytes(b"")
    expect_error(model_dir, "model.safetensors", "not a valid safetensors file", capsys=capsys)


@pytest.mark.parametrize("cut", ["4 bytes", "inside header", "after header", "mid data", "last byte"])
def test_truncated_file(model_dir, cut, capsys):
    path = model_dir / "model.safetensors"
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    keep = {"4 bytes": 4, "inside header": 8 + n // 2, "after header": 8 + n,
            "mid data": (8 + n + len(raw)) // 2, "last byte": len(raw) - 1}[cut]
    path.write_bytes(raw[:keep])
    expect_error(model_dir, str(path), "truncated or corrupt", capsys=capsys)


def test_corrupt_header_json(model_dir, capsys):
    path = model_dir / "model.safetensors"
    raw = bytearray(path.read_bytes())
    raw[8:20] = b"{not json!!}"
    path.write_bytes(bytes(raw))
    expect_error(model_dir, "not a valid safetensors file", capsys=capsys)


def test_header_points_outside_file(model_dir, capsys):
    def edit(h):
        begin, end = h["wte.weight"]["data_offsets"]
        h["wte.weight"]["data_offsets"] = [begin + 10**9, end + 10**9]
    rewrite_header(model_dir / "model.safetensors", edit)
    expect_error(model_dir, "not a valid safetensors file", capsys=capsys)


def test_unknown_dtype(model_dir, capsys):
    t = tensors_of(model_dir / "model.safetensors")
    t["wte.weight"] = t["wte.weight"].astype(np.int32)
    save_tensors(t, model_dir / "model.safetensors")
    expect_error(model_dir, "wte.weight has dtype I32", "F32, F16, BF16", capsys=capsys)


def test_wrong_shape(model_dir, capsys):
    t = tensors_of(model_dir / "model.safetensors")
    t["h.1.attn.c_attn.weight"] = t["h.1.attn.c_attn.weight"].T.copy()
    save_tensors(t, model_dir / "model.safetensors")
    expect_error(model_dir, "h.1.attn.c_attn.weight expected [32, 96], found [96, 32]", capsys=capsys)


def test_missing_tensors(model_dir, capsys):
    t = tensors_of(model_dir / "model.safetensors")
    del t["h.0.mlp.c_fc.bias"], t["ln_f.weight"]
    save_tensors(t, model_dir / "model.safetensors")
    expect_error(model_dir, "missing tensors: h.0.mlp.c_fc.bias, ln_f.weight", capsys=capsys)


def test_unknown_extra_tensor(model_dir, capsys):
    t = tensors_of(model_dir / "model.safetensors")
    t["h.0.attn.rotary.weight"] = np.zeros(4, np.float32)
    save_tensors(t, model_dir / "model.safetensors")
    expect_error(model_dir, "tensors gpt2np does not know: h.0.attn.rotary.weight", capsys=capsys)


def test_config_disagrees_with_tensors(model_dir, capsys):
    cfg = dict(CFG, n_embd=64)
    (model_dir / "config.json").write_text(json.dumps(cfg))
    expect_error(model_dir, "config.json and model.safetensors disagree",
                 "wte.weight expected [64, 64], found [64, 32]", capsys=capsys)


def test_config_with_more_layers_than_file(model_dir):
    (model_dir / "config.json").write_text(json.dumps(dict(CFG, n_layer=3)))
    expect_error(model_dir, "missing tensors: h.2.ln_1.weight")


def test_untied_lm_head_refused(model_dir, capsys):
    t = tensors_of(model_dir / "model.safetensors")
    t["lm_head.weight"] = t["wte.weight"] + 1
    save_tensors(t, model_dir / "model.safetensors")
    expect_error(model_dir, "lm_head.weight differs from wte.weight", capsys=capsys)


@pytest.mark.parametrize("change, phrase", [
    ({"model_type": "llama"}, "model_type is 'llama'"),
    ({"architectures": ["LlamaForCausalLM"]}, "architecture 'LlamaForCausalLM' is not GPT-2"),
    ({"activation_function": "relu"}, "activation_function 'relu' is not supported"),
    ({"n_head": 3}, "not divisible by n_head"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"n_layer": 0}, "n_layer must be a positive integer"),
])
def test_config_refused(model_dir, change, phrase, capsys):
    (model_dir / "config.json").write_text(json.dumps(dict(CFG, **change)))
    expect_error(model_dir, "config.json", phrase, capsys=capsys)


def test_config_not_json(model_dir, capsys):
    (model_dir / "config.json").write_text("{oops")
    expect_error(model_dir, "not valid JSON", capsys=capsys)


def test_params_are_memory_mapped(good_weights_dir):
    """F32 weights are views of the file (np.memmap), not copies."""
    model = gpt2np.load(good_weights_dir)
    wte = model.params["wte.weight"]
    base = wte
    while base.base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    assert not wte.flags.writeable


def test_buffers_are_dropped_whatever_their_dtype(model_dir):
    t = tensors_of(model_dir / "model.safetensors")
    for i in range(2):
        t[f"h.{i}.attn.bias"] = np.tril(np.ones((16, 16), np.uint8))[None, None]
    save_tensors(t, model_dir / "model.safetensors")
    assert "h.0.attn.bias" not in gpt2np.load(model_dir).params


def test_unknown_model_name(capsys):
    with pytest.raises(gpt2np.GPT2npError, match="Unknown model 'no-such-model'"):
        gpt2np.load("no-such-model")
    assert cli.main(["--model", "no-such-model", "hi"]) == 2
