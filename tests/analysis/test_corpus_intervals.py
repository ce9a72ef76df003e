"""Corpus mode's intervals for a mean stay inside the statistic's range (issue 20, §2.4): the
logit-scale interval (report.mean_interval) on hand-made windows near 0 whose normal interval left
[0, 1], against a float64 reference; its coverage on simulated windows; results files of version 1
(normal intervals) read with recomputed intervals, or refused with what to do."""

import json
import math

import numpy as np
import pytest

from gpt2np.analysis import corpus
from gpt2np.analysis.corpus.report import MEAN_INTERVAL, VERSION, mean_interval
from gpt2np.errors import GPT2npError

Z = 1.959963984540054
# Seven windows' sink weights: six near 0 and one large, mean 0.04 (head 3.4's case in the issue).
NEAR_ZERO = np.array([0.001, 0.002, 0.001, 0.003, 0.002, 0.001, 0.270])


def reference(x, lo=0.0, hi=1.0):
    """float64, written apart from the code under test: logistic(logit(m) ± z·se/(m(1−m)))."""
    u = (np.asarray(x, dtype=np.float64) - lo) / (hi - lo)
    m, se = u.mean(), u.std(ddof=1) / math.sqrt(len(u))
    ends = np.log(m / (1 - m)) + np.array([-Z, Z]) * se / (m * (1 - m))
    return lo + (hi - lo) / (1 + np.exp(-ends))


def normal(x):
    x = np.asarray(x, dtype=np.float64)
    half = Z * x.std(ddof=1) / math.sqrt(len(x))
    return np.array([x.mean() - half, x.mean() + half])


def test_windows_near_zero_get_an_interval_inside_0_1():
    x = NEAR_ZERO
    assert x.mean() == pytest.approx(0.04)
    assert normal(x)[0] < 0                               # what version 1 reported: below 0
    low, high = mean_interval(x.mean(), x.std(ddof=1), len(x))
    assert 0 < low < x.mean() < high < 1
    assert [low, high] == pytest.approx(reference(x), rel=1e-12)
    # the same windows near 1 (1 − x): the mirror image, below 1
    low1, high1 = mean_interval(1 - x.mean(), x.std(ddof=1), len(x))
    assert (low1, high1) == pytest.approx((1 - high, 1 - low), rel=1e-12)


def test_a_range_other_than_0_1_and_the_edge_cases():
    bits = NEAR_ZERO * 5                                   # entropy over a window of 32: 0 … 5 bits
    got = mean_interval(bits.mean(), bits.std(ddof=1), len(bits), 0.0, 5.0)
    assert got == pytest.approx(reference(bits, 0.0, 5.0), rel=1e-12) and 0 < got[0] < got[1] < 5
    assert mean_interval(0.0, 0.0, 7) == (0.0, 0.0)       # every window at the bound
    assert mean_interval(1.0, 0.0, 7) == (1.0, 1.0)
    assert mean_interval(0.3, 0.0, 7) == (0.3, 0.3)       # every window the same
    assert mean_interval(0.3, 0.1, 1) is None              # one window: no interval


def test_coverage_on_simulated_windows_near_0():
    """Seven windows drawn from Beta(0.4, 9.6) (mean 0.04, skewed like a weak sink): the code's
    intervals equal the reference's on every draw, all lie inside [0, 1], and cover the true mean
    at least as often as the normal interval, which leaves [0, 1] on a third of the draws."""
    rng = np.random.default_rng(20)
    truth, draws = 0.04, 2000
    covered = covered_normal = outside_normal = 0
    for _ in range(draws):
        x = rng.beta(0.4, 9.6, size=7)
        got = mean_interval(x.mean(), x.std(ddof=1), len(x))
        ref = reference(x)
        assert got == pytest.approx(ref, rel=1e-9, abs=1e-15) and 0 <= got[0] <= got[1] <= 1
        covered += ref[0] <= truth <= ref[1]
        n_low, n_high = normal(x)
        covered_normal += n_low <= truth <= n_high
        outside_normal += n_low < 0
    assert outside_normal > draws // 5
    assert covered >= covered_normal
    assert covered / draws > 0.8


@pytest.fixture(scope="module")
def results(small_text_model_dir, tmp_path_factory):
    text = ("It is a truth universally acknowledged, that a single man in possession of a good "
            "fortune, must be in want of a wife. ") * 6
    path = tmp_path_factory.mktemp("intervals") / "stats.json"
    corpus.measure(small_text_model_dir, [("a.txt", text)], window=16, top_k=2, workers=0, out=path)
    return path


def as_version_1(data):
    """What the code before version 2 wrote: the same sums, normal intervals."""
    n = data["windows_measured"]
    for head in data["heads"]:
        for st in head["stats"].values():
            half = Z * st["sd"] / math.sqrt(n)
            st["interval"] = [st["mean"] - half, st["mean"] + half]
    data["version"] = 1
    data["intervals"]["mean"] = "mean ± 1.96·s/√n over windows (normal approximation)"
    return data


def test_a_version_1_file_is_read_with_new_intervals(results, tmp_path):
    new = json.loads(results.read_text())
    assert new["version"] == VERSION == 2 and new["intervals"]["mean"] == MEAN_INTERVAL
    old = tmp_path / "old.json"
    old.write_text(json.dumps(as_version_1(json.loads(results.read_text()))))
    got = corpus.read_stats(old)
    assert got["version"] == 2 and got["upgraded_from_version"] == 1
    assert got["intervals"]["mean"] == MEAN_INTERVAL
    for a, b in zip(got["heads"], new["heads"]):
        for name in a["stats"]:
            assert a["stats"][name]["interval"] == pytest.approx(b["stats"][name]["interval"], abs=1e-15)


def test_a_rerun_with_the_same_out_rewrites_a_version_1_file(results, small_text_model_dir, tmp_path):
    """Its sums are the same run's (the fingerprint does not hold the report's version): the rerun
    measures nothing and writes this version's report."""
    want = json.loads(results.read_text())
    old = tmp_path / "old.json"
    old.write_text(json.dumps(as_version_1(json.loads(results.read_text()))))
    text = ("It is a truth universally acknowledged, that a single man in possession of a good "
            "fortune, must be in want of a wife. ") * 6
    r = corpus.measure(small_text_model_dir, [("a.txt", text)], window=16, top_k=2, workers=0, out=old)
    assert r["run"]["windows"] == 0
    again = json.loads(old.read_text())
    assert again["version"] == 2
    assert [h["stats"] for h in again["heads"]] == [h["stats"] for h in want["heads"]]


def test_a_version_1_file_that_cannot_be_read_says_to_run_again(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": corpus.FORMAT, "version": 1, "heads": []}))
    with pytest.raises(GPT2npError, match="again"):
        corpus.read_stats(bad)
