"""gpt2np.analysis.corpus and `python -m gpt2np corpus`: every statistic against a float64 reference computed
here on the same windows, the predictions against their own per-window reference, streaming sums
against batch numbers, the Wilson interval against published values, checkpoints and resuming,
local workers and a Dask cluster giving identical results, and bad input refused in one line."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from modelfiles import small_config, write_model_dir

import gpt2np
from gpt2np import cli
from gpt2np import engine as cpu_engine
from gpt2np.analysis import corpus, findings
from gpt2np.analysis.corpus import totals as corpus_totals
from gpt2np.analysis.corpus.report import published_roles, wilson_interval
from gpt2np.analysis.corpus.sources import read_sources
from gpt2np.analysis.corpus.totals import Totals
from gpt2np.analysis.corpus.window import N_BINS, PREDICTIONS, STATISTICS

REPO = Path(__file__).resolve().parents[2]
PARAGRAPHS = [
    "It was a bright cold day in April, and the clocks were striking thirteen. The hallway smelt "
    "of boiled cabbage and old rag mats.",
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in "
    "my purse, I thought I would sail about a little and see the watery part of the world.",
    "The sky above the port was the colour of television, tuned to a dead channel.",
    "When Mary and John went to the store, John gave a drink to Mary. The trophy doesn't fit in "
    "the suitcase because it is too big. The quick brown fox jumps over the lazy dog.",
]
TEXTS = [("a.txt", " ".join(PARAGRAPHS[:2]) + "<|endoftext|>" + PARAGRAPHS[2]),
         ("b.txt", PARAGRAPHS[3] * 2)]
WITHOUT_RUN = lambda r: {k: v for k, v in r.items() if k != "run"}  # noqa: E731


@pytest.fixture(scope="module")
def six_layer_dir(tmp_path_factory):
    """6 layers × 4 heads, GPT-2's tokenizer: layers 4-5 make prediction 3 apply."""
    cfg = small_config(n_layer=6, n_head=4, n_embd=32, n_positions=64, vocab_size=50257)
    path, _ = write_model_dir(tmp_path_factory.mktemp("six") / "six-layer", cfg, seed=7)
    return path


# The engine on one thread, as corpus windows are computed: the same float32 patterns.
ONE_THREAD = cpu_engine.CPUKernels(workers=1)


# -- the reference, written here in float64 ------------------------------------------------------
def reference_logit_interval(x, lo, hi, z=1.959963984540054):
    """The 95% interval of the mean of x (values in [lo, hi]) on the logit scale, in float64."""
    u = (np.asarray(x, dtype=np.float64) - lo) / (hi - lo)
    m, se = u.mean(), u.std(ddof=1) / np.sqrt(len(u))
    if se == 0 or m in (0.0, 1.0):
        return [float(x.mean())] * 2
    t = np.log(m) - np.log1p(-m) + np.array([-1.0, 1.0]) * z * se / (m * (1 - m))
    return (lo + (hi - lo) * np.exp(t) / (1 + np.exp(t))).tolist()


def reference_windows(model, texts, window, stride, bos):
    """Token windows as documented: each document (a text, or a piece between <|endoftext|>)
    from token 0, `stride` apart, until one reaches the document's end; under 2 tokens skipped."""
    out = []
    for _, text in texts:
        for doc in text.split("<|endoftext|>"):
            ids = model.encode(doc)
            size = window - bos
            for start in range(0, len(ids), stride):
                piece = ([model.bos_id()] if bos else []) + ids[start:start + size]
                if len(piece) >= 2:                  # the statistics need two tokens
                    out.append(piece)
                if start + size >= len(ids):
                    break
    return out


def reference_queries(model, trace):
    """Per layer, per statistic: [H, T-1] values of queries 1..T-1, in float64."""
    H, T = model.config.n_head, trace.n_tokens
    rows, q = np.arange(1, T), {}
    out = []
    for L in range(model.config.n_layer):
        p = trace.pattern(L).astype(np.float64)                            # [H, T, T]
        logp = np.log2(np.where(p > 0, p, 1.0))
        w = model.params[f"h.{L}.attn.c_proj.weight"].astype(np.float64)
        w = w.reshape(H, -1, w.shape[1])                                    # [H, dh, d]
        v = trace[f"blocks.{L}.attn.hook_v"].astype(np.float64)            # [T, H, dh]
        norms = np.sqrt((np.einsum("thk,hkd->htd", v, w) ** 2).sum(-1))   # [H, T]
        moved = p * norms[:, None, :]
        q = {"entropy": -(p * logp).sum(-1)[:, 1:],
             "sink": p[:, 1:, 0],
             "previous": p[:, rows, rows - 1],
             "self": p[:, rows, rows],
             "vw_sink_share": moved[:, 1:, 0] / moved[:, 1:, :].sum(-1)}
        out.append(q)
    return out


def top(entries, k):
    """The k best (value, window, position): largest value, then earlier window and position."""
    return sorted(entries, key=lambda e: (-e[0], e[1], e[2]))[:k]


# -- statistics ----------------------------------------------------------------------------------
def test_statistics_match_a_float64_reference(small_text_model_dir):
    model = gpt2np.load(small_text_model_dir)
    window, stride, k = 16, 11, 3
    r = corpus.measure(model, TEXTS, window=window, stride=stride, bos=True, top_k=k, workers=0)
    windows = reference_windows(model, TEXTS, window, stride, bos=True)
    assert r["input"]["windows"] == len(windows) == r["windows_measured"]
    assert r["settings"] == {"window": window, "stride": stride, "bos": True, "top_k": k}
    induction = findings.induction_scores(model)[0]
    edges = {s["name"]: np.linspace(*s["range"], s["bins"] + 1) for s in r["statistics"]}
    assert edges["entropy"][-1] == pytest.approx(math.log2(window))

    means = {}        # (stat, layer, head) -> [window means]
    queries = {}      # (stat, layer, head) -> [(value, window, position)]
    types = {}        # head name -> {type: windows}
    for w, ids in enumerate(windows):
        trace = model.run(ids, kernels=ONE_THREAD)
        for L, q in enumerate(reference_queries(model, trace)):
            for name, values in q.items():
                for h in range(model.config.n_head):
                    means.setdefault((name, L, h), []).append(values[h].mean())
                    queries.setdefault((name, L, h), []).extend(
                        (float(x), w, i + 1) for i, x in enumerate(values[h]))
        for row in findings.head_table(model, trace, induction=induction):
            counts = types.setdefault(row["head"], {})
            counts[row["type"]] = counts.get(row["type"], 0) + 1

    for head in r["heads"]:
        L, h = head["layer"], head["index"]
        assert head["types"] == types[head["head"]]
        for name, got in head["stats"].items():
            x = np.array(means[(name, L, h)])
            mean, sd = x.mean(), x.std(ddof=1)
            assert got["mean"] == pytest.approx(mean, abs=1e-9)
            assert got["sd"] == pytest.approx(sd, abs=1e-9)
            lo, hi = edges[name][0], edges[name][-1]
            assert got["interval"] == pytest.approx(reference_logit_interval(x, lo, hi), abs=1e-9)
            assert lo <= got["interval"][0] <= got["interval"][1] <= hi
            values = np.array([e[0] for e in queries[(name, L, h)]])
            expected = np.histogram(np.clip(values, lo, hi), bins=edges[name])[0]
            assert got["histogram"] == expected.tolist(), (head["head"], name)
            best = top(queries[(name, L, h)], k)
            assert [(e["window"], e["position"]) for e in head["top_positions"][name]] == \
                [(w, i) for _, w, i in best]
            assert [e["value"] for e in head["top_positions"][name]] == \
                pytest.approx([v for v, _, _ in best], abs=1e-12)
            best_windows = top([(m, w, -1) for w, m in enumerate(means[(name, L, h)])], k)
            assert [(e["window"], e["value"]) for e in head["top_windows"][name]] == \
                [(w, pytest.approx(v, abs=1e-12)) for v, w, _ in best_windows]

    for key, view in r["windows"].items():       # every example's window, as the viewer shows it
        ids = windows[int(key)]
        assert view["tokens"] == model.token_strings(ids) and view["bos"]
        if "view_positions" not in view:
            assert model.encode(view["text"]) == ids[1:]


def test_predictions_match_a_per_window_reference(six_layer_dir):
    """Windows of 4 tokens: with so few keys, random heads often put ≥ 30% on position 0, so
    prediction 3 holds in some windows and fails in others."""
    model = gpt2np.load(six_layer_dir)
    r = corpus.measure(model, TEXTS, window=4, workers=0)
    induction = findings.induction_scores(model)[0]
    verdicts = {1: [], 2: [], 3: [], 5: []}
    sink_counts = {4: [], 5: []}
    for ids in reference_windows(model, TEXTS, 4, 4, bos=False):
        trace = model.run(ids, kernels=ONE_THREAD)
        p = [trace.pattern(L) for L in range(6)]
        verdicts[1].append(all((np.triu(x, 1) == 0).all() for x in p))
        verdicts[2].append(all((x[:, 0, 0] == 1.0).all() for x in p))
        counts = [int((x[:, 1:, 0].astype(np.float64).mean(-1) >= 0.3).sum()) for x in p[4:]]
        for L, c in zip((4, 5), counts):
            sink_counts[L].append(c)
        verdicts[3].append(all(c in (1, 2) for c in counts))
        table = findings.head_table(model, trace, induction=induction)
        distinct = [len({row["type"] for row in table if row["layer"] == L}) for L in range(5)]
        verdicts[5].append(max(distinct) >= 3)
    assert 0 < sum(verdicts[3]) < len(verdicts[3])            # the input tells holds from fails
    rows = {p["id"]: p for p in r["predictions"]}
    for i, v in verdicts.items():
        k, n = sum(v), len(v)
        assert (rows[i]["holds"], rows[i]["windows"], rows[i]["not_applicable"]) == (k, n, 0), i
        assert rows[i]["share"] == pytest.approx(k / n)
        assert rows[i]["interval"] == pytest.approx(wilson_interval(k, n))
    assert rows[3]["measured"]["mean_heads_with_sink_per_layer"] == pytest.approx(
        {str(L): np.mean(c) for L, c in sink_counts.items()})


def test_prediction_3_is_not_applicable_without_layers_4_to_8(small_text_model_dir):
    r = corpus.measure(small_text_model_dir, TEXTS, window=16, workers=0, max_windows=3)
    row = next(p for p in r["predictions"] if p["id"] == 3)
    assert (row["windows"], row["not_applicable"], row["share"], row["interval"]) == (0, 3, None, None)


# -- streaming sums ------------------------------------------------------------------------------
def fake_result(rng, L=2, H=3, k=2, T=6):
    """A window result with random numbers, in measure_window's layout."""
    S = len(STATISTICS)
    values = rng.random((S, L, H))
    top_value = -np.sort(-rng.random((S, L, H, k)), axis=-1)
    return {"values": values, "histogram": rng.integers(0, 5, (S, L, H, N_BINS)),
            "top_value": top_value, "top_position": rng.integers(1, T, (S, L, H, k)),
            "types": rng.integers(0, len(gpt2np.analysis.HEAD_TYPES), (L, H)),
            "verdicts": {i: findings.HOLDS if rng.random() < 0.5 else findings.FAILS
                         for i in PREDICTIONS},
            "detail": {"above_diagonal": 0.0, "first_weight": 1.0, "first_entropy": 0.0,
                       "sink_heads": {}, "distinct_types": {0: int(rng.integers(1, 4))}}}


def test_streaming_sums_equal_batch_numbers_and_survive_a_checkpoint():
    rng = np.random.default_rng(0)
    results = [fake_result(rng) for _ in range(9)]
    totals = Totals(2, 3, top_k=2)
    for i, r in enumerate(results):
        totals.add(i, r)
    values = np.stack([r["values"] for r in results])                  # [n, S, L, H]
    np.testing.assert_allclose(totals.mean, values.mean(0), rtol=0, atol=1e-15)
    np.testing.assert_allclose(totals.sd(), values.std(0, ddof=1), rtol=0, atol=1e-15)
    assert (totals.histogram == sum(r["histogram"] for r in results)).all()
    S, L, H = values.shape[1:]
    for s, layer, h in np.ndindex(S, L, H):
        entries = [(r["top_value"][s, layer, h, j], i, r["top_position"][s, layer, h, j])
                   for i, r in enumerate(results) for j in range(2)]
        got = list(zip(*(x[s, layer, h].tolist() for x in totals.top_positions)))
        assert got == [(float(v), w, int(p)) for v, w, p in top(entries, 2)]
        windows = top([(values[i, s, layer, h], i, -1) for i in range(len(results))], 2)
        assert totals.top_windows[1][s, layer, h].tolist() == [w for _, w, _ in windows]
    for i in PREDICTIONS:
        assert totals.verdicts[i][findings.HOLDS] == sum(r["verdicts"][i] == findings.HOLDS
                                                        for r in results)

    # Checkpoint after 4 windows (through JSON), continue: the same bits as one pass.
    first = Totals(2, 3, top_k=2)
    for i, r in enumerate(results[:4]):
        first.add(i, r)
    resumed = Totals.from_state(json.loads(json.dumps(first.state())))
    for i, r in enumerate(results[4:], start=4):
        resumed.add(i, r)
    assert json.dumps(resumed.state()) == json.dumps(totals.state())
    with pytest.raises(ValueError):
        resumed.add(11, results[0])                                    # out of order


def test_wilson_interval_against_published_values():
    """Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 (Wilson score)."""
    for k, n, low, high in ((81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605),
                            (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
                            (29, 29, 0.8830, 1.0)):
        got = wilson_interval(k, n)
        assert got == pytest.approx((low, high), abs=5e-5), (k, n)
    assert wilson_interval(0, 0) is None


# -- checkpoints ---------------------------------------------------------------------------------
def test_resume_after_max_windows_and_after_an_interrupt(small_text_model_dir, tmp_path, monkeypatch):
    run = lambda out, **kw: corpus.measure(small_text_model_dir, TEXTS, window=12, workers=0,  # noqa: E731
                                           out=out, **kw)
    whole = run(tmp_path / "whole.json")
    assert whole["complete"] and whole["windows_measured"] == whole["input"]["windows"] > 8

    part = run(tmp_path / "part.json", max_windows=3)
    assert (part["windows_measured"], part["complete"]) == (3, False)
    assert json.loads((tmp_path / "part.json").read_text())["windows_measured"] == 3
    resumed = run(tmp_path / "part.json")
    assert resumed["run"]["windows"] == whole["windows_measured"] - 3    # only the rest computed
    assert WITHOUT_RUN(resumed) == WITHOUT_RUN(whole)

    def stop_after_5(done, total):
        if done == 5:
            raise KeyboardInterrupt
    with pytest.raises(corpus.Interrupted) as stopped:
        run(tmp_path / "cut.json", progress=stop_after_5)
    assert (stopped.value.done, stopped.value.total) == (5, whole["windows_measured"])
    saved = json.loads((tmp_path / "cut.json").read_text())
    assert (saved["windows_measured"], saved["complete"], saved["run"]["interrupted"]) == (5, False, True)
    assert WITHOUT_RUN(run(tmp_path / "cut.json")) == WITHOUT_RUN(whole)
    assert WITHOUT_RUN(json.loads((tmp_path / "cut.json").read_text())) == \
        WITHOUT_RUN(json.loads((tmp_path / "whole.json").read_text()))

    # Ctrl+C (a real SIGINT) while a window is being folded: the window is folded whole first.
    merge_top, calls = corpus_totals.merge_top, []

    def merge_top_then_sigint(*args):
        calls.append(1)
        if len(calls) == 13:                 # window 6's first merge: mean, m2, histogram already in
            signal.raise_signal(signal.SIGINT)
        return merge_top(*args)
    monkeypatch.setattr(corpus_totals, "merge_top", merge_top_then_sigint)
    with pytest.raises(corpus.Interrupted) as stopped:
        run(tmp_path / "sigint.json")
    monkeypatch.setattr(corpus_totals, "merge_top", merge_top)
    assert stopped.value.done == 7
    assert WITHOUT_RUN(run(tmp_path / "sigint.json")) == WITHOUT_RUN(whole)

    with pytest.raises(gpt2np.GPT2npError, match="another model, input or settings"):
        corpus.measure(small_text_model_dir, TEXTS, window=10, workers=0, out=tmp_path / "whole.json")
    restarted = corpus.measure(small_text_model_dir, TEXTS, window=10, workers=0,
                               out=tmp_path / "whole.json", restart=True)
    assert restarted["settings"]["window"] == 10


# -- who computes: local workers and a Dask cluster ----------------------------------------------
def test_local_workers_and_a_dask_cluster_give_identical_results(small_text_model_dir, monkeypatch):
    """Also in this process with the engine set for three cores, as on another machine: every
    window is computed on one thread, so the core count does not change a bit."""
    from distributed import LocalCluster
    kw = dict(window=12, stride=9)
    monkeypatch.setattr(cpu_engine, "CPU", cpu_engine.CPUKernels(workers=3))   # the default kernels
    here = corpus.measure(small_text_model_dir, TEXTS, workers=0, **kw)
    one = corpus.measure(small_text_model_dir, TEXTS, workers=1, **kw)
    two = corpus.measure(small_text_model_dir, TEXTS, workers=2, **kw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        dask = corpus.measure(small_text_model_dir, TEXTS, scheduler=cluster.scheduler_address, **kw)
    assert (one["run"]["workers"], two["run"]["workers"], dask["run"]["workers"]) == (1, 2, 2)
    assert dask["run"]["scheduler"] == cluster.scheduler_address
    assert json.dumps(WITHOUT_RUN(one)) == json.dumps(WITHOUT_RUN(two)) \
        == json.dumps(WITHOUT_RUN(dask)) == json.dumps(WITHOUT_RUN(here))


# -- the command line ----------------------------------------------------------------------------
def corpus_cli(capsys, *args):
    code = cli.main(["corpus", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_measures_a_directory_and_reports(small_text_model_dir, tmp_path, capsys):
    src = tmp_path / "texts"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text(TEXTS[0][1])
    (src / "sub" / "b.txt").write_text(TEXTS[1][1])
    (src / "ignored.md").write_text("not read")
    out = tmp_path / "stats.json"
    code, text, err = corpus_cli(capsys, src, "--model", small_text_model_dir, "--window", 16,
                                 "--workers", 1, "--out", out)
    assert code == 0, err
    r = json.loads(out.read_text())
    assert [s["name"] for s in r["input"]["sources"]] == ["a.txt", "sub/b.txt"]
    assert r["input"]["documents"] == 3
    same = corpus.measure(small_text_model_dir, read_sources(src), window=16, workers=0)
    assert WITHOUT_RUN(r) == WITHOUT_RUN(json.loads(json.dumps(same)))
    holds = next(p for p in r["predictions"] if p["id"] == 1)
    assert f"holds in {holds['holds']} of {holds['windows']} windows" in text
    assert "windows/s with 1 worker on this machine" in text
    first = r["heads"][0]["stats"]["sink"]
    assert f"{first['mean']:.3f} [{first['interval'][0]:.3f}, {first['interval'][1]:.3f}]" in text


def test_cli_long_line_and_replace_errors(small_text_model_dir, tmp_path, capsys):
    line = " ".join(PARAGRAPHS) * 4                                    # one line, many windows
    (tmp_path / "long.txt").write_text(line)
    model = gpt2np.load(small_text_model_dir)
    n = len(model.encode(line))
    code, _, err = corpus_cli(capsys, tmp_path / "long.txt", "--model", small_text_model_dir,
                              "--window", 32, "--workers", 1, "--out", tmp_path / "long.json")
    assert code == 0, err
    assert json.loads((tmp_path / "long.json").read_text())["windows_measured"] == math.ceil(n / 32)

    (tmp_path / "latin1.txt").write_bytes("Café au lait, s'il vous plaît.".encode("latin-1"))
    code, _, err = corpus_cli(capsys, tmp_path / "latin1.txt", "--model", small_text_model_dir,
                              "--window", 8, "--workers", 1, "--errors", "replace",
                              "--out", tmp_path / "latin1.json")
    assert code == 0, err
    r = json.loads((tmp_path / "latin1.json").read_text())
    assert "\ufffd" in "".join(w["text"] for w in r["windows"].values())


@pytest.mark.parametrize("case, expected", [
    ("empty", "is empty"), ("blank", "only whitespace"), ("binary", "binary data"),
    ("latin1", "not valid UTF-8: byte 0xe9"), ("missing", "no such file"),
    ("no-txt", "no *.txt file"), ("window", "longer than"), ("short", "too short"),
    ("stride", "--stride 0"), ("workers", "--workers must be"), ("not-ours", "not a gpt2np corpus file"),
    ("other-run", "another model, input or settings"), ("scheduler", "Cannot reach the Dask scheduler"),
])
def test_cli_bad_input_is_one_line_and_exit_2(case, expected, small_text_model_dir, tmp_path, capsys, monkeypatch):
    good = tmp_path / "good.txt"
    good.write_text(PARAGRAPHS[0])
    kept = tmp_path / "kept.json"                        # results of an earlier run
    assert corpus_cli(capsys, good, "--model", small_text_model_dir, "--window", 8, "--workers", 1,
                      "--out", kept)[0] == 0
    before = kept.read_bytes()
    files = {"empty": b"", "blank": b" \n\t\n", "binary": b"\x7fELF\x02\x01\x01\x00\x00",
             "latin1": "Café".encode("latin-1")}
    source, options = good, ["--window", "8"]
    if case == "scheduler":             # nothing listens there: connect for 1 s, not the command's 10 s
        import distributed
        client = distributed.Client
        monkeypatch.setattr(distributed, "Client",
                            lambda address, timeout=None, **kw: client(address, timeout="1s", **kw))
    if case in files:
        source = tmp_path / f"{case}.txt"
        source.write_bytes(files[case])
    elif case == "missing":
        source = tmp_path / "nothing-here.txt"
    elif case == "no-txt":
        source = tmp_path / "dir"
        source.mkdir()
        (source / "a.md").write_text("text")
    else:
        options = {"window": ["--window", "65"], "short": ["--window", "1"],
                   "stride": ["--window", "8", "--stride", "0"], "workers": ["--workers", "0"],
                   "not-ours": ["--window", "8", "--out", good],
                   "other-run": ["--window", "9", "--out", kept],
                   "scheduler": ["--window", "8", "--scheduler", "tcp://127.0.0.1:9",
                                 "--out", tmp_path / "new.json"]}[case]
    out = ["--out", kept] if "--out" not in options else []
    code, text, err = corpus_cli(capsys, source, "--model", small_text_model_dir, "--workers", 1,
                                 *options, *out)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gpt2np: error: ") and expected in err, err
    assert "Traceback" not in err and text == ""
    assert good.read_text() == PARAGRAPHS[0] and kept.read_bytes() == before


def test_ctrl_c_saves_and_a_rerun_continues(small_text_model_dir, tmp_path):
    """SIGINT to `python -m gpt2np corpus` while it measures: exit 130, a message saying how to
    continue, the windows done saved; the same command again completes, equal to one run."""
    (tmp_path / "in.txt").write_text(" ".join(PARAGRAPHS) * 15)
    out = tmp_path / "stats.json"
    command = [sys.executable, "-m", "gpt2np", "corpus", str(tmp_path / "in.txt"), "--model",
               str(small_text_model_dir), "--window", "8", "--workers", "1", "--out", str(out),
               "--checkpoint-every", "0"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if json.loads(out.read_text())["windows_measured"] >= 3:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Run the same command again to continue" in stderr and "Traceback" not in stderr
    saved = json.loads(out.read_text())
    assert 3 <= saved["windows_measured"] < saved["input"]["windows"] and not saved["complete"]

    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    done = json.loads(out.read_text())
    assert done["complete"] and done["run"]["windows"] == done["input"]["windows"] - saved["windows_measured"]
    whole = corpus.measure(small_text_model_dir, read_sources(tmp_path / "in.txt"),
                           window=8, workers=0)
    assert WITHOUT_RUN(done) == WITHOUT_RUN(json.loads(json.dumps(whole)))


def test_published_roles_are_listed_for_gpt2_small_only():
    """GPT-2 small's shape lists every head of findings.PUBLISHED_ROLES with its corpus means."""
    heads = [{"head": f"{L}.{h}", "type": "mixed",
              "stats": {s: {"mean": L + h / 100 + i / 1000} for i, s in enumerate(STATISTICS)}}
             for L in range(12) for h in range(12)]
    gpt2 = gpt2np.GPT2Config(n_layer=12, n_head=12, n_embd=768)
    roles = published_roles(gpt2, heads)
    assert roles["applicable"]
    listed = {h["head"]: h for role in roles["roles"] for h in role["heads"]}
    assert set(listed) == {name for _, names, _, _ in findings.PUBLISHED_ROLES for name in names}
    L, h = map(int, "4.11".split("."))
    assert listed["4.11"]["previous"] == L + h / 100 + 2 / 1000
    assert not published_roles(gpt2np.GPT2Config(n_layer=4, n_head=8, n_embd=256), [])["applicable"]


def test_standard_input_is_read_as_utf8():
    import io
    assert read_sources("-", stdin=io.BytesIO("Ünïcode text".encode())) == \
        [("<stdin>", "Ünïcode text")]
    with pytest.raises(gpt2np.GPT2npError, match="standard input is not valid UTF-8: byte 0xff"):
        read_sources("-", stdin=io.BytesIO(b"ok \xff"))
    assert read_sources("-", "replace", stdin=io.BytesIO(b"ok \xff")) == [("<stdin>", "ok \ufffd")]
