"""Activation patching: where in the model a prediction is decided.

Run a clean sentence ("… because it is too big") and a corrupted one that differs in a word
("… too small"), with the same number of tokens. Then, one site at a time, rerun the corrupted
sentence with one activation copied from the clean run, and measure how much of the clean answer
comes back. The measure is the logit difference at `position`,

    LD = logit(answer) − logit(versus)
    normalized = (LD_patched − LD_corrupted) / (LD_clean − LD_corrupted)   0 = corrupted, 1 = clean

    patch(model, clean, corrupted, answer, versus, sites=SITES, position=-1, head=None)

Sites (each a grid of patched runs):
    resid_pre, resid_post, attn_out, mlp_out   blocks.L.hook_<site> at one position: layer × position
    z                                          blocks.L.attn.hook_z of one head, every position: layer × head
    pattern                                    blocks.L.attn.hook_pattern of one head (the clean
                                               pattern, weighing the corrupted values): layer × head
    z_position                                 one chosen head's (`head="L.H"`) hook_z at one position:
                                               1 × position

How it is done: through the forward pass's own `edit` step (gpt2np/model.py), never a copy of the
model. A patch at layer L cannot change the layers before L, so each patched run starts from the
corrupted run's residual stream entering L and computes only the blocks L … n_layer−1
(`Model.blocks_from`, model.py's `block`); the metric needs two logits at one position, so the
final LayerNorm is applied to that row alone and multiplied by the two tokens' embeddings.
Every LD — clean, corrupted and patched — is computed by the same function from a final residual
stream, so patching nothing gives 0 exactly and a patch that restores the whole clean stream 1.

Follows TransformerLens's `patching` module (`get_act_patch_resid_pre`, ...; Heimersheim & Nanda,
"How to use and interpret activation patching", 2024) for the sites and the normalised metric.
"""

from dataclasses import dataclass, field

import numpy as np

from ..errors import GPT2npError
from ..heads import head_name, parse_heads
from ..model import replacing
from ..ops import layer_norm
from .interventions import token_id

POSITION_SITES = ("resid_pre", "resid_post", "attn_out", "mlp_out")   # layer × position
HEAD_SITES = ("z", "pattern")                                         # layer × head
SITES = ("resid_pre", "attn_out", "mlp_out", "z", "pattern")          # the default sweep
ALL_SITES = POSITION_SITES + HEAD_SITES + ("z_position",)
NAMES = {"resid_pre": "hook_resid_pre", "resid_post": "hook_resid_post", "attn_out": "hook_attn_out",
         "mlp_out": "hook_mlp_out", "z": "attn.hook_z", "pattern": "attn.hook_pattern",
         "z_position": "attn.hook_z"}


class PatchingCancelled(Exception):
    """Raised by `patch` when its `cancel` callable returned True; nothing is returned."""


@dataclass
class Grid:
    """One site's results: cell [r, c] is the run with that row's and column's activation patched.

    site: "resid_pre", ...; name: the TransformerLens name patched, with {layer} in it;
    rows, columns: labels ("layer 3"; "5: ' big'", "9: ' girl' → ' boy'" where the inputs differ;
    "head 7"); ld, normalized: [rows, columns] float64.
    """
    site: str
    name: str
    rows: list
    columns: list
    ld: np.ndarray
    normalized: np.ndarray

    def to_dict(self):
        return {"site": self.site, "name": self.name, "rows": self.rows, "columns": self.columns,
                "ld": self.ld.tolist(), "normalized": self.normalized.tolist()}


@dataclass
class PatchResult:
    """What `patch` measured. grids: {site: Grid} in the order asked; `top(n)`: the cells that
    restore most; `to_dict()`: the same as JSON-ready data."""
    clean_tokens: list
    corrupted_tokens: list
    position: int
    answer: dict                  # {"token", "id"}
    versus: dict
    ld_clean: float
    ld_corrupted: float
    grids: dict = field(default_factory=dict)

    def top(self, n=10):
        """The n cells with the largest normalised effect, over every grid:
        [{"site", "row", "column", "normalized", "ld"}], largest first."""
        cells = [{"site": g.site, "row": g.rows[r], "column": g.columns[c],
                  "normalized": float(g.normalized[r, c]), "ld": float(g.ld[r, c])}
                 for g in self.grids.values() for r in range(len(g.rows)) for c in range(len(g.columns))]
        return sorted(cells, key=lambda cell: -cell["normalized"])[:n]

    def to_dict(self):
        return {"clean_tokens": self.clean_tokens, "corrupted_tokens": self.corrupted_tokens,
                "position": self.position, "answer": self.answer, "versus": self.versus,
                "ld_clean": self.ld_clean, "ld_corrupted": self.ld_corrupted,
                "grids": {site: g.to_dict() for site, g in self.grids.items()}}


def check_same_length(model, clean_ids, corrupted_ids):
    """Patching copies activations position by position: both inputs need as many tokens."""
    if len(clean_ids) == len(corrupted_ids):
        return
    show = lambda ids: " | ".join(repr(t) for t in model.token_strings(ids))  # noqa: E731
    raise GPT2npError(
        f"The clean and corrupted inputs must have the same number of tokens, to be patched position "
        f"by position: clean has {len(clean_ids)} ({show(clean_ids)}), corrupted has "
        f"{len(corrupted_ids)} ({show(corrupted_ids)}). Change words for words of as many tokens.")


def logit_difference(model, resid_final, position, answer_id, versus_id):
    """LD at `position` from a final residual stream [T, d]: the final LayerNorm of that row, then
    its logits for the two tokens (the tied unembedding). -> float"""
    p = model.params
    final, _ = layer_norm(resid_final[position:position + 1], p["ln_f.weight"], p["ln_f.bias"],
                          model.config.layer_norm_epsilon)                           # [1, d]
    logits = final @ p["wte.weight"][[answer_id, versus_id]].T                       # [1, d] @ [d, 2] -> [1, 2]
    return float(logits[0, 0]) - float(logits[0, 1])


def patched_final(model, corrupted, layer, edit, engine=None):
    """The corrupted run (a Trace) rerun with `edit` from `layer` on: the blocks before it are the
    corrupted run's, unchanged. -> the final residual stream [T, d] (the last block's resid_post)."""
    acts = model.blocks_from(layer, corrupted[f"blocks.{layer}.hook_resid_pre"], edit, engine)
    return acts[f"blocks.{model.config.n_layer - 1}.hook_resid_post"]


def position_labels(clean, corrupted):
    """Column labels "t: 'token'", both tokens where the inputs differ: "9: ' girl' → ' boy'"."""
    return [f"{t}: {a!r}" if a == b else f"{t}: {a!r} → {b!r}"
            for t, (a, b) in enumerate(zip(clean.tokens, corrupted.tokens))]


def sweep(site, model, clean, corrupted, head=None):
    """The patched runs of one site: [(row, column, layer, edit)] and the row and column labels.
    Each edit puts the clean trace's value of one activation (part of one) into the corrupted run."""
    L, H, T = model.config.n_layer, model.config.n_head, corrupted.n_tokens
    tokens = position_labels(clean, corrupted)
    layers = [f"layer {layer}" for layer in range(L)]
    runs = []
    if site in POSITION_SITES:
        for layer in range(L):
            name = f"blocks.{layer}.{NAMES[site]}"
            runs += [(layer, t, layer, replacing({name: [(t, clean[name][t])]})) for t in range(T)]
        return runs, layers, tokens
    if site in HEAD_SITES:
        for layer in range(L):
            name = f"blocks.{layer}.{NAMES[site]}"
            index = (lambda h: (slice(None), h)) if site == "z" else (lambda h: h)   # z [T, H, dh]; pattern [H, T, T]
            runs += [(layer, h, layer, replacing({name: [(index(h), clean[name][index(h)])]})) for h in range(H)]
        return runs, layers, [f"head {h}" for h in range(H)]
    layer, h = head
    name = f"blocks.{layer}.attn.hook_z"
    runs = [(0, t, layer, replacing({name: [((t, h), clean[name][t, h])]})) for t in range(T)]
    return runs, [head_name(layer, h)], tokens


def check_sites(model, sites, head=None):
    """The sites and head of `patch`, checked -> (sites as a list without repeats, (layer, head) or
    None); head given with the default sites adds "z_position"."""
    sites = list(dict.fromkeys([sites] if isinstance(sites, str) else sites))
    if head is not None:
        heads = parse_heads(head, model.config)
        if len(heads) != 1:
            raise GPT2npError(f"Give one head for the site z_position, got {len(heads)}: "
                              f"{', '.join(head_name(*h) for h in heads)}.")
        head = heads[0]
        if "z_position" not in sites and tuple(sites) == SITES:
            sites.append("z_position")
    unknown = [s for s in sites if s not in ALL_SITES]
    if unknown or not sites:
        raise GPT2npError(f"Unknown patching site {unknown[0]!r}: choose from {', '.join(ALL_SITES)}."
                          if unknown else f"No patching site given: choose from {', '.join(ALL_SITES)}.")
    if "z_position" in sites and head is None:
        raise GPT2npError('The site "z_position" patches one head\'s z position by position: say which '
                          'head, e.g. head="5.1".')
    return sites, head


def patch(model, clean, corrupted, answer, versus, sites=SITES, position=-1, head=None, bos=False,
          progress=None, cancel=None, engine=None):
    """Activation patching of `corrupted` with activations of `clean` (see the module docstring).

    clean, corrupted: texts or token ids, the same number of tokens. answer, versus: single tokens
    (text or id), different. position: where the logits are read (default: the last token).
    sites: names from ALL_SITES, default SITES; "z_position" needs head ("L.H" or (L, H)), and
    head given adds it to the default sites. bos: prepend <|endoftext|> to both.
    progress: called as progress(done, total) after every patched run (e.g. to move a tqdm bar).
    cancel: called before every patched run; returning True stops the sweep with
      PatchingCancelled (progress may also raise any exception to stop it).
    engine: "fast" or "reference", as for Model.run.
    -> PatchResult
    """
    sites, head = check_sites(model, sites, head)
    answer_id, versus_id = token_id(model, answer), token_id(model, versus)
    if answer_id == versus_id:
        raise GPT2npError(f"Both tokens are {model.token_strings([answer_id])[0]!r} (id {answer_id}): a "
                          "logit difference needs two different tokens.")
    clean_ids, corrupted_ids = model.prompt_ids(clean, bos), model.prompt_ids(corrupted, bos)
    check_same_length(model, clean_ids, corrupted_ids)

    clean_run, corrupted_run = model.run(clean_ids, engine=engine), model.run(corrupted_ids, engine=engine)
    position = corrupted_run.check_position(position)
    final = f"blocks.{model.config.n_layer - 1}.hook_resid_post"
    ld = lambda resid: logit_difference(model, resid, position, answer_id, versus_id)  # noqa: E731
    ld_clean, ld_corrupted = ld(clean_run[final]), ld(corrupted_run[final])
    if ld_clean == ld_corrupted:
        raise GPT2npError(f"The clean and corrupted inputs give the same logit difference ({ld_clean:.6g}) "
                          "at that position: there is nothing to restore. Choose inputs or tokens whose "
                          "logit differences differ.")

    plans = {site: sweep(site, model, clean_run, corrupted_run, head) for site in sites}
    total, done = sum(len(runs) for runs, _, _ in plans.values()), 0
    name = lambda token: {"token": model.token_strings([token])[0], "id": int(token)}  # noqa: E731
    result = PatchResult(clean_run.tokens, corrupted_run.tokens, position, name(answer_id), name(versus_id),
                         ld_clean, ld_corrupted)
    for site, (runs, rows, columns) in plans.items():
        grid = np.zeros((len(rows), len(columns)))
        for row, column, layer, edit in runs:
            if cancel is not None and cancel():
                raise PatchingCancelled(f"patching cancelled after {done} of {total} runs")
            grid[row, column] = ld(patched_final(model, corrupted_run, layer, edit, engine))
            done += 1
            if progress is not None:
                progress(done, total)
        label = f"blocks.{{layer}}.{NAMES[site]}"
        result.grids[site] = Grid(site, label, rows, columns, grid,
                                  (grid - ld_corrupted) / (ld_clean - ld_corrupted))
    return result
