"""Open a GPT-2 checkpoint (`model.safetensors`) and return its parameters, checked.

The result is a plain dict keyed exactly as in the official GPT-2 file (`wte.weight`,
`h.3.attn.c_attn.weight`, ...), float32, memory-mapped where the file stores float32 (loading
copies nothing; pages are read when the forward pass first touches them).

Accepted variants found in the wild (the official layout: tests/data/gpt2/README.md):
a `transformer.` key prefix; an explicit `lm_head.weight` (must equal `wte.weight`: GPT-2 ties
them); the `h.N.attn.bias` causal-mask buffers and `h.N.attn.masked_bias` scalars (dropped: the
forward pass builds its own mask); F16 and BF16 tensors (converted to float32).
Everything else -- missing or unknown tensors, wrong shapes, a truncated or corrupt file, an
unknown dtype -- is refused with one paragraph naming the file and the problem.
"""

import json
import re
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from ..errors import GPT2npError

WEIGHTS_FILE = "model.safetensors"
PREFIX = "transformer."
BUFFER_KEY = re.compile(r"^h\.(\d+)\.attn\.(bias|masked_bias)$")   # non-learned buffers
DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


def expected_shapes(config):
    """Every learned tensor of a GPT-2 with this config, in checkpoint order, with its shape."""
    d, m = config.n_embd, config.d_mlp
    shapes = {"wte.weight": (config.vocab_size, d), "wpe.weight": (config.n_positions, d)}
    for i in range(config.n_layer):
        shapes.update({
            f"h.{i}.ln_1.weight": (d,), f"h.{i}.ln_1.bias": (d,),
            f"h.{i}.attn.c_attn.weight": (d, 3 * d), f"h.{i}.attn.c_attn.bias": (3 * d,),
            f"h.{i}.attn.c_proj.weight": (d, d), f"h.{i}.attn.c_proj.bias": (d,),
            f"h.{i}.ln_2.weight": (d,), f"h.{i}.ln_2.bias": (d,),
            f"h.{i}.mlp.c_fc.weight": (d, m), f"h.{i}.mlp.c_fc.bias": (m,),
            f"h.{i}.mlp.c_proj.weight": (m, d), f"h.{i}.mlp.c_proj.bias": (d,),
        })
    shapes.update({"ln_f.weight": (d,), "ln_f.bias": (d,)})
    return shapes


def _listing(items, limit=8):
    items = list(items)
    more = f" … and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _read_header(path):
    """Validate the file with the safetensors library, then return its header entries.

    The library checks the header (size, JSON, that the offsets cover the file exactly). Its
    NumPy reader copies each tensor into memory, so the offsets it has validated are read from the
    header here and the data is mapped with np.memmap instead: no copy at load.
    """
    try:
        with safe_open(str(path), framework="numpy") as f:
            f.keys()
    except (SafetensorError, OSError, ValueError) as e:
        raise GPT2npError(
            f"{path}: not a valid safetensors file ({e}). It is probably truncated or corrupt "
            "(an interrupted download?): delete it and download it again.") from None
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


def _to_float32(raw, dtype):
    """Stored bytes -> float32 array (a view when already float32)."""
    if dtype == "F32":
        return raw
    if dtype == "BF16":  # bfloat16 is the top half of a float32
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


def read_safetensors(path):
    """All tensors of a safetensors file as float32 NumPy arrays, keyed as stored.

    Buffers (`h.N.attn.bias`, `h.N.attn.masked_bias`) are skipped, whatever their dtype.
    """
    path = Path(path)
    header, data_start = _read_header(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    tensors = {}
    for key, entry in header.items():
        if BUFFER_KEY.match(key.removeprefix(PREFIX)):
            continue
        dtype = entry["dtype"]
        if dtype not in DTYPES:
            raise GPT2npError(
                f"{path}: tensor {key} has dtype {dtype}; gpt2np reads F32, F16, BF16 and F64 "
                "weights. Convert the checkpoint to one of these.")
        begin, end = entry["data_offsets"]
        raw = data[data_start + begin:data_start + end].view(DTYPES[dtype])
        tensors[key] = _to_float32(raw.reshape(entry["shape"]), dtype)
    return tensors


def load_params(directory, config):
    """Read `model.safetensors` from a model directory; check it against the config.

    -> dict checkpoint name -> float32 array, exactly the keys of `expected_shapes(config)`.
    """
    directory = Path(directory)
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        others = sorted(p.name for p in directory.glob("*") if p.suffix in (".bin", ".h5", ".msgpack")
                        or p.name.endswith(".index.json"))
        hint = (f" The directory has {_listing(others)}; gpt2np reads only a single "
                "model.safetensors file (convert with transformers' save_pretrained)." if others else "")
        raise GPT2npError(f"{path}: file not found. A model directory needs config.json, "
                          f"model.safetensors and tokenizer.json.{hint}")

    stored = read_safetensors(path)
    params = {key.removeprefix(PREFIX): value for key, value in stored.items()}
    if len(params) != len(stored):
        raise GPT2npError(f"{path}: the same tensor is stored both with and without the "
                          f"'{PREFIX}' prefix; the file is ambiguous.")

    lm_head = params.pop("lm_head.weight", None)
    want = expected_shapes(config)
    missing = [k for k in want if k not in params]
    unknown = [k for k in params if k not in want]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing tensors: {_listing(missing)}")
        if unknown:
            problems.append(f"tensors gpt2np does not know: {_listing(unknown)}")
        raise GPT2npError(
            f"{path}: {'; '.join(problems)}. Expected a GPT-2 with n_layer={config.n_layer} as "
            "config.json says; check that config.json belongs to this model.safetensors.")

    wrong = [f"{k} expected {list(s)}, found {list(params[k].shape)}"
             for k, s in want.items() if params[k].shape != s]
    if wrong:
        raise GPT2npError(
            f"{path}: tensors with the wrong shape for config.json (n_embd={config.n_embd}, "
            f"n_head={config.n_head}, vocab_size={config.vocab_size}, "
            f"n_positions={config.n_positions}): {_listing(wrong, 4)}. config.json and "
            "model.safetensors disagree: use the config.json that came with these weights.")

    if lm_head is not None and not (lm_head.shape == params["wte.weight"].shape
                                    and np.array_equal(lm_head, params["wte.weight"])):
        raise GPT2npError(
            f"{path}: lm_head.weight differs from wte.weight. GPT-2 ties its output layer to the "
            "token embedding and gpt2np computes logits with wte.weight, so an untied head "
            "would give wrong logits; this checkpoint is not a GPT-2 with tied weights.")
    return {k: params[k] for k in want}


def count_params(params):
    """Number of learned parameters (buffers are not in `params`)."""
    return int(sum(p.size for p in params.values()))
