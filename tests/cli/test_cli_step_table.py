"""`generate --show-steps`'s table (gpt2np/cli/generate.py step_table) on hand-made logits: the running Σ
column is the sum top-p reads, over what top-k kept — shown on the rows top-k kept and "—" on
the rows it cut, as the viewer's sampling ledger shows it (generate.js runningSum)."""

import numpy as np

from gpt2np.cli.generate import step_table
from gpt2np.generate import choose

LOGITS = np.array([2.0, 0.5, 3.0, 1.0, -1.0, 0.0])        # ranks: id 2, 0, 3, 1, 5, 4


def strings(ids):
    return [f"t{i}" for i in ids]


def running_column(lines):
    """The running Σ cell of each candidate row (the 7th field of a row)."""
    rows = [line.split() for line in lines[2:] if line.strip() and line.split()[0].isdigit()]
    return [r[6] for r in rows]


def test_greedy_rows_after_the_first_have_no_running_sum():
    step = choose(LOGITS, np.random.default_rng(0), 1, strings, greedy=True)
    column = running_column(step_table(step, True, 1))
    assert column == ["1.0000"] + ["—"] * (len(LOGITS) - 1)


def test_top_k_rows_show_the_running_sum_of_what_top_k_kept():
    step = choose(LOGITS, np.random.default_rng(0), 1, strings, temperature=1.0, top_k=3)
    kept = np.sort(LOGITS)[::-1][:3]
    after_k = np.exp(kept - kept.max()) / np.exp(kept - kept.max()).sum()     # float64, the three kept
    column = running_column(step_table(step, False, 1))
    assert column[:3] == [f"{x:.4f}" for x in np.cumsum(after_k)]
    assert column[3:] == ["—"] * (len(LOGITS) - 3)
