"""What a trace shows, measured: the statistics of attention patterns and the head types
(`stats.py`, whose names this package also gives: `gpt2np.analysis.sink_mass`, ...), the findings
report as data (`findings.py`), interventions (`interventions.py`: logit lens, ablation, minimal
pairs, direct logit attribution), activation patching (`patching.py`) and the same statistics over
many texts (`corpus/`).

Imports run one way: these modules read traces and call `Model.run`; the model never imports them.
"""

from .stats import (
    HEAD_TYPES,
    POSITIONAL_TYPES,
    THRESHOLDS,
    candidate_keys,
    classify_head,
    column_share,
    distinguishable_ids,
    fewer_keys_note,
    head_output_weights,
    induction_probe_ids,
    induction_score,
    layer_stats,
    mean_entropy,
    next_token_top_k,
    normalized_entropy,
    previous_per_query,
    previous_token_mass,
    probabilities,
    row_entropy,
    self_mass,
    self_per_query,
    sink_mass,
    sink_per_query,
    top_column,
    top_keys,
    type_rule,
    value_norms,
    value_weighted_pattern,
    value_weighted_sink_per_query,
    value_weighted_sink_share,
)

__all__ = [
    "THRESHOLDS",
    "HEAD_TYPES",
    "POSITIONAL_TYPES",
    "probabilities",
    "next_token_top_k",
    "sink_mass",
    "sink_per_query",
    "previous_token_mass",
    "previous_per_query",
    "candidate_keys",
    "top_keys",
    "fewer_keys_note",
    "row_entropy",
    "mean_entropy",
    "normalized_entropy",
    "self_mass",
    "self_per_query",
    "column_share",
    "top_column",
    "distinguishable_ids",
    "induction_probe_ids",
    "induction_score",
    "head_output_weights",
    "value_norms",
    "value_weighted_pattern",
    "value_weighted_sink_share",
    "value_weighted_sink_per_query",
    "layer_stats",
    "classify_head",
    "type_rule",
]
