"""GPT2Config: the handful of numbers that fix a GPT-2 model's shapes, read from `config.json`.

Follows the Hugging Face `GPT2Config` field names, so the `config.json` of gpt2, distilgpt2,
gpt2-medium, gpt2-large and gpt2-xl (or any model saved by `transformers` as GPT-2) loads as is.
Options that change the math away from GPT-2's are refused rather than silently ignored.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import GPT2npError

# Activations that are exactly GPT-2's tanh-approximated GELU.
SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")

# Hugging Face options that would change the forward pass, with the value GPT-2 uses.
GPT2_DEFAULTS = {
    "scale_attn_weights": True,               # divide scores by √d_head
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "add_cross_attention": False,
}


@dataclass(frozen=True)
class GPT2Config:
    n_layer: int = 12                # transformer blocks
    n_head: int = 12                 # attention heads per block
    n_embd: int = 768                # width of the residual stream, d
    n_positions: int = 1024          # context length: rows of the position embedding
    vocab_size: int = 50257          # rows of the token embedding (and of the tied LM head)
    layer_norm_epsilon: float = 1e-5 # added to the variance in every LayerNorm
    n_inner: int | None = None       # MLP hidden width; None means 4·n_embd
    activation_function: str = "gelu_new"

    @property
    def d_head(self) -> int:
        """Width of one head's query, key and value vectors."""
        return self.n_embd // self.n_head

    @property
    def d_mlp(self) -> int:
        """Width of the MLP hidden layer."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    def __post_init__(self):
        for name in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise GPT2npError(f"config: {name} must be a positive integer, found {value!r}.")
        if self.n_embd % self.n_head:
            raise GPT2npError(
                f"config: n_embd ({self.n_embd}) is not divisible by n_head ({self.n_head}), "
                "so the heads cannot split the residual stream evenly.")
        if self.activation_function not in SUPPORTED_ACTIVATIONS:
            raise GPT2npError(
                f"config: activation_function {self.activation_function!r} is not supported; "
                f"gpt2np computes GPT-2's tanh GELU ({', '.join(SUPPORTED_ACTIVATIONS)}).")

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "GPT2Config":
        """Build from a Hugging Face config dict; refuse what is not a GPT-2."""
        model_type = d.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise GPT2npError(
                f"{source}: model_type is {model_type!r}, but gpt2np runs only GPT-2 models "
                "(model_type 'gpt2': gpt2, distilgpt2, gpt2-medium/large/xl and models saved as "
                "GPT2LMHeadModel).")
        for arch in d.get("architectures") or []:
            if not arch.startswith("GPT2"):
                raise GPT2npError(
                    f"{source}: architecture {arch!r} is not GPT-2; gpt2np runs GPT2LMHeadModel "
                    "checkpoints only.")
        for key, gpt2_value in GPT2_DEFAULTS.items():
            if key in d and d[key] != gpt2_value:
                raise GPT2npError(
                    f"{source}: {key} = {d[key]!r} changes the forward pass away from GPT-2's "
                    f"({key} = {gpt2_value!r}); gpt2np does not implement that variant.")
        fields = {f: d[f] for f in cls.__dataclass_fields__ if f in d}
        try:
            return cls(**fields)
        except GPT2npError as e:    # name the file the bad value came from
            raise GPT2npError(str(e).replace("config:", f"{source}:", 1)) from None

    @classmethod
    def from_file(cls, path) -> "GPT2Config":
        path = Path(path)
        if not path.is_file():
            raise GPT2npError(
                f"{path}: no config.json. A model directory needs config.json, model.safetensors "
                "and tokenizer.json (as on the Hugging Face Hub).")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise GPT2npError(f"{path}: not valid JSON ({e}). Re-download config.json.") from None
        if not isinstance(d, dict):
            raise GPT2npError(f"{path}: expected a JSON object, found {type(d).__name__}.")
        return cls.from_dict(d, source=str(path))
