"""Patching over many pairs (gpt2np.analysis.patching_pairs): the means equal the per-pair
PatchResults averaged in float64 here (position columns aligned at the read position), the
bootstrap interval agrees with the exact bootstrap distribution of hand-made effects, bad lines are
reported by number and skipped, and local workers, this process and a two-worker Dask LocalCluster
give identical numbers. Pairs come from the demo model's own sentences (its card) with one token
swapped by its tokenizer (demofacts.one_token_swap)."""

import itertools
import json

import numpy as np
import pytest
from demofacts import one_token_swap

from gpt2np import GPT2npError, cli
from gpt2np.analysis.examples import examples_for
from gpt2np.analysis.patching import patch
from gpt2np.analysis.patching_pairs import bootstrap_interval, patch_pairs, read_pairs

SITES = ["resid_pre", "attn_out", "z"]
WITHOUT_RUN = lambda r: {k: v for k, v in r.items() if k != "run"}  # noqa: E731


def tokens_as_text(model, change):
    """The tokens whose logits the corruption lowers and raises most, among those that are typed as
    text and come back as one token."""
    ranked = [s for s in model.token_strings(np.argsort(-change, kind="stable").tolist())
              if len(model.encode(s)) == 1]
    return ranked[0], ranked[-1]


@pytest.fixture(scope="module")
def pairs(demo):
    """Good pairs of different lengths from the card's sentences and pair."""
    out = [examples_for(demo)["pair"]]
    for s in examples_for(demo)["sentences"][:3]:
        text = " ".join(s["text"].split()[:12])
        other, _ = one_token_swap(demo, text)
        answer, versus = tokens_as_text(demo, demo.run(text).logits[-1] - demo.run(other).logits[-1])
        out.append({"clean": text, "corrupted": other, "answer": answer, "versus": versus})
    assert len({len(demo.encode(p["clean"])) for p in out}) > 1      # the alignment is exercised
    return out


@pytest.fixture(scope="module")
def pairs_file(pairs, tmp_path_factory):
    """The good pairs with bad lines between them: (path, {line: reason fragment})."""
    good = [json.dumps(p) for p in pairs]
    p0 = pairs[0]
    lines = [good[0], "{not json", good[1], "",
             json.dumps({**p0, "corrupted": p0["corrupted"] + " and so on"}),      # misaligned
             json.dumps({**p0, "answer": p0["answer"] + p0["clean"]}),             # not one token
             json.dumps({k: p0[k] for k in ("clean", "corrupted", "answer")}),    # no versus
             json.dumps([p0["clean"]]), good[2],
             json.dumps({**p0, "corrupted": p0["clean"]}),                         # same LD: nothing to restore
             good[3]]
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, {2: "not JSON", 5: "corrupted", 6: "tokens (", 7: "no versus", 8: "not a JSON object",
                  10: "same logit difference"}


def test_means_are_the_per_pair_results_aligned_at_the_read_position(demo, pairs):
    r = patch_pairs(demo, pairs, sites=SITES, workers=0, resamples=200)
    assert r["pairs"] == len(pairs) and r["bad"] == []
    results = [patch(demo, p["clean"], p["corrupted"], p["answer"], p["versus"], sites=SITES) for p in pairs]
    longest = max(len(x.clean_tokens) for x in results)
    for site in SITES:
        s = r["sites"][site]
        for row in range(len(s["rows"])):
            for col, label in enumerate(s["columns"]):
                if site == "z":                     # heads: the same cell in every pair
                    values = [x.grids[site].normalized[row, col] for x in results]
                else:                               # column "p-k": k tokens before the read position
                    k = longest - 1 - col
                    assert label == ("p" if k == 0 else f"p-{k}")
                    values = [x.grids[site].normalized[row, x.position - k] for x in results
                              if x.position - k >= 0]
                assert s["n"][row][col] == len(values)
                assert s["mean"][row][col] == pytest.approx(np.mean(np.array(values, np.float64)),
                                                            rel=1e-12, abs=1e-15)
    assert [p["ld_clean"] for p in r["per_pair"]] == [x.ld_clean for x in results]


def test_bootstrap_interval_against_the_exact_bootstrap_distribution():
    """Five hand-made effects (unbounded: one above 1, one below 0): every one of the 5^5 equally
    likely resamples enumerated in float64; the Monte Carlo 2.5 % and 97.5 % points must fall
    within the exact distribution's 1.5 %–3.5 % and 96.5 %–98.5 % points."""
    effects = np.array([0.12, 0.95, 1.40, -0.35, 0.50])
    means = np.sort([np.mean(effects[list(ix)]) for ix in itertools.product(range(5), repeat=5)])
    q = lambda p: means[int(p * len(means))]  # noqa: E731
    column = np.stack([effects, effects[::-1]], axis=1)          # two cells, the same multiset
    mean, low, high, n = bootstrap_interval(column, resamples=20_000, seed=1)
    assert mean == pytest.approx([effects.mean()] * 2, abs=1e-15) and n.tolist() == [5, 5]
    assert q(0.015) <= low[0] <= q(0.035) and q(0.965) <= high[0] <= q(0.985)
    assert q(0.035) - q(0.015) < 0.1 * (q(0.975) - q(0.025))     # the bands are narrow enough to tell


def test_bootstrap_interval_hand_made_edges():
    same = np.full((6, 1), 0.7)                                    # no spread: the interval is the point
    mean, low, high, n = bootstrap_interval(same, resamples=100)
    assert (mean[0], low[0], high[0], n[0]) == (pytest.approx(0.7), pytest.approx(0.7), pytest.approx(0.7), 6)
    gaps = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, np.nan]])   # the second cell has one pair
    mean, low, high, n = bootstrap_interval(gaps, resamples=500)
    assert mean.tolist() == [3.0, 2.0] and n.tolist() == [3, 1]
    assert 1.0 <= low[0] < 3.0 < high[0] <= 5.0 and np.isnan(low[1]) and np.isnan(high[1])


def test_bad_lines_are_named_and_skipped(demo, pairs, pairs_file):
    path, reasons = pairs_file
    good, bad = read_pairs(path)
    assert [line for line, _ in good] == [1, 3, 5, 6, 9, 10, 11]
    r = patch_pairs(demo, good, sites=["z"], bad=bad, workers=0, resamples=200)
    assert [b["line"] for b in r["bad"]] == sorted(reasons)
    for b in r["bad"]:
        assert reasons[b["line"]] in b["reason"]
    assert r["pairs"] == len(pairs) and [p["line"] for p in r["per_pair"]] == [1, 3, 9, 11]
    alone = patch_pairs(demo, pairs, sites=["z"], workers=0, resamples=200)
    assert r["sites"] == alone["sites"]                          # the bad lines changed nothing


def test_no_good_pair_is_an_error(demo, tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"clean": "a"}\nnot json\n', encoding="utf-8")
    with pytest.raises(GPT2npError, match="No pair could be patched"):
        patch_pairs(demo, *read_pairs(path)[:1], bad=read_pairs(path)[1], workers=0)
    assert cli.main(["patch", "--model", "demo", "--pairs", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpt2np: error: No pair could be patched") and "line 2" in err[0]


def test_local_workers_this_process_and_a_dask_cluster_give_identical_results(pairs_file, capsys):
    from distributed import LocalCluster
    path, _ = pairs_file
    good, bad = read_pairs(path)
    kw = dict(sites=SITES, bad=bad, resamples=500)
    here = patch_pairs("demo", good, workers=0, **kw)
    two = patch_pairs("demo", good, workers=2, **kw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        dask = patch_pairs("demo", good, scheduler=cluster.scheduler_address, **kw)
        assert cli.main(["patch", "--model", "demo", "--pairs", str(path), "--sites", ",".join(SITES),
                         "--resamples", "500", "--scheduler", cluster.scheduler_address, "--json"]) == 0
        by_cli = json.loads(capsys.readouterr().out)
    assert (here["run"]["workers"], two["run"]["workers"], dask["run"]["workers"]) == (1, 2, 2)
    assert json.dumps(WITHOUT_RUN(here)) == json.dumps(WITHOUT_RUN(two)) == json.dumps(WITHOUT_RUN(dask))
    assert json.dumps({k: by_cli[k] for k in WITHOUT_RUN(here)}) == json.dumps(WITHOUT_RUN(here))
