"""Which heads go into the file: the options layers, heads, qk and values read and checked."""

import re
from dataclasses import dataclass, field

from gpt2np import GPT2npError
from gpt2np.heads import check_head, parse_heads

MB = 1_000_000
DEFAULT_MAX_MB = 50          # a file
SMALL_MB = 2                 # the default qk adds heads beyond the opening one up to this size

class ExportError(GPT2npError):
    pass


# -- what goes in ----------------------------------------------------------------------------------
def parse_layers(spec, n, what="layer"):
    """None or "all" -> every index; "0-3,7", "0 5" or a list of ints -> those, sorted and checked."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return list(range(n))
    parts = re.split(r"[\s,]+", spec.strip()) if isinstance(spec, str) else list(spec)
    out = set()
    for part in parts:
        if part == "":
            continue
        try:
            lo, _, hi = str(part).partition("-") if isinstance(part, str) else (part, "", "")
            lo, hi = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise ExportError(f"Cannot read the {what} {str(part)[:20]!r}: give numbers and ranges, "
                              f"e.g. 0-3,7, or 'all'.") from None
        if not 0 <= lo <= hi < n:
            raise ExportError(f"There is no {what} {part}: this model has {what}s 0–{n - 1}.")
        out.update(range(lo, hi + 1))
    if not out:
        raise ExportError(f"No {what} given: name at least one (e.g. 0-3), or 'all'.")
    return sorted(out)


@dataclass
class Choice:
    """What the caller asked for: the opening view, the heads wanted, the budgets."""
    layer: int = 0
    head: int = 0
    query: int | None = None          # None: the last token (as the live page)
    heatmaps: list = field(default_factory=list)    # [(layer, head)] wanted, in order
    exact: list = field(default_factory=list)       # [(layer, head)] wanted, in order
    values: list = field(default_factory=list)      # [(layer, head)] wanted, in order
    max_bytes: int = DEFAULT_MAX_MB * MB
    exact_bytes: int = DEFAULT_MAX_MB * MB          # the file's size up to which step 4 adds heads
    values_bytes: int = DEFAULT_MAX_MB * MB         # ... and step 5


def heads_option(spec, default, every, config):
    """None -> `default`; "all", "none"; or heads as for gpt2np.heads.parse_heads ("5.1 5.5")."""
    if spec is None:
        return default
    if isinstance(spec, str) and spec.strip().lower() in ("all", "none"):
        return every if spec.strip().lower() == "all" else []
    return parse_heads(spec, config)


def choose(config, T, layer=0, head=0, query=None, layers=None, heads=None, qk=None, values=None,
           max_mb=DEFAULT_MAX_MB):
    """The options of to_html, checked -> Choice. qk: None (the opening head's layer, within
    SMALL_MB), "all", "none", or heads as for gpt2np.heads.parse_heads ("5.1 5.5"); values: the
    same, None being the opening head within SMALL_MB."""
    layer, head = check_head(config, layer, head)
    if query is not None and not 0 <= query < T:
        raise ExportError(f"The query {query} is out of range: the input has tokens 0–{T - 1}.")
    if isinstance(max_mb, bool) or not isinstance(max_mb, (int, float)) or not max_mb > 0:
        raise ExportError(f"max_mb must be a positive number of megabytes, got {max_mb!r}.")
    max_bytes = int(max_mb * MB)
    chosen_layers = parse_layers(layers, config.n_layer, "layer")
    chosen_heads = parse_layers(heads, config.n_head, "head")
    heatmaps = [(L, h) for L in chosen_layers for h in chosen_heads]
    every = [(L, h) for L in range(config.n_layer) for h in range(config.n_head)]
    small = min(max_bytes, SMALL_MB * MB)
    exact = heads_option(qk, [(layer, h) for h in range(config.n_head)], every, config)
    vals = heads_option(values, [(layer, head)], every, config)
    return Choice(layer, head, query, heatmaps, exact, vals, max_bytes,
                  small if qk is None else max_bytes, small if values is None else max_bytes)
