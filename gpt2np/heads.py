"""Attention heads by name: "L.H" is head H of layer L, checked against a model's shape.

    head_name(4, 11)                  "4.11"
    check_head(config, 4, 11)         (4, 11), or an error naming the model's layers and heads
    parse_heads("4.11, 5.1", config)  [(4, 11), (5, 1)], sorted, each one checked

Used by `Model.run` (z_ablation), the command line, the interventions and the viewer, so a head
is written, read and refused the same way everywhere.
"""

import re

import numpy as np

from .errors import GPT2npError

MAX_SPEC_CHARS = 12        # "L.H" longer than this is not a head (and is not echoed back)


def head_name(layer, head):
    return f"{layer}.{head}"


def check_head(config, layer, head):
    """(layer, head) when the model has that head, else a GPT2npError saying which it has."""
    if not (0 <= layer < config.n_layer and 0 <= head < config.n_head):
        raise GPT2npError(f"There is no head {head_name(layer, head)}: this model has layers "
                          f"0–{config.n_layer - 1} and heads 0–{config.n_head - 1}.")
    return layer, head


def parse_heads(specs, config):
    """Heads given as "4.11", "4.11,5.1", "4.11 5.1; 6.9", (4, 11) or a list of these
    -> sorted list of distinct (layer, head), each checked against the model's shape."""
    if isinstance(specs, str) or (isinstance(specs, tuple) and len(specs) == 2
                                  and all(isinstance(x, (int, np.integer)) for x in specs)):
        specs = [specs]
    parts = [part for spec in specs
             for part in (re.split(r"[\s,;]+", spec) if isinstance(spec, str) else [spec]) if part != ""]
    if len(parts) > config.n_layer * config.n_head:
        raise GPT2npError(f"{len(parts):,} heads given, but the model has {config.n_layer * config.n_head}.")
    heads = set()
    for part in parts:
        if isinstance(part, str) and len(part) > MAX_SPEC_CHARS:
            raise GPT2npError(f"Cannot read the head {part[:MAX_SPEC_CHARS]!r}…: write heads as "
                              "LAYER.HEAD, e.g. 4.11 for layer 4, head 11.")
        try:
            layer, head = map(int, part.split(".") if isinstance(part, str) else part)
        except (ValueError, TypeError):
            raise GPT2npError(f"Cannot read the head {part!r}: write heads as LAYER.HEAD, "
                              "e.g. 4.11 for layer 4, head 11.") from None
        heads.add(check_head(config, layer, head))
    if not heads:
        raise GPT2npError("No heads given: name at least one head as LAYER.HEAD, e.g. 4.11.")
    return sorted(heads)
