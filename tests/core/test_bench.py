"""The benchmark runs end to end and reports what it says it reports. No timing is judged here:
every time is only checked to be a measured figure (finite, positive), never against a bound."""

import json
import math

import pytest

from benchmarks import bench


def measured(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_bench_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--tokens", "16", "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {"machine", "forward", "load", "bandwidth", "viewer"} <= set(result)
    (row,) = result["forward"]
    assert row["T"] == 16
    for phase, impls in (("quiet", bench.IMPLEMENTATIONS), ("busy", bench.BUSY_IMPLEMENTATIONS)):
        assert set(row[phase]) == set(impls), phase
        for impl, times in row[phase].items():
            assert len(times["runs_s"]) == 1 and all(measured(s) for s in times["runs_s"]), impl
            assert times["min_s"] <= times["median_s"] <= times["max_s"], impl
    quiet = {impl: times["median_s"] for impl, times in row["quiet"].items()}
    assert math.isclose(row["ratios"]["fast/transformers"], quiet["fast"] / quiet["transformers"], rel_tol=1e-12)
    assert math.isclose(row["ratios"]["fast/products_numpy"], quiet["fast"] / quiet["products_numpy"], rel_tol=1e-12)
    load = result["load"]
    assert measured(load["gpt2np_s"]) and measured(load["transformers_s"])
    bw = result["bandwidth"]
    assert 490e6 < bw["weights_MB"] * 1e6 < 510e6                          # GPT-2 small's F32 weights
    assert measured(bw["read_GBps"]) and measured(bw["floor_s"])
    assert math.isclose(bw["floor_s"], bw["weights_MB"] * 1e6 / (bw["read_GBps"] * 1e9), rel_tol=1e-9)
    assert result["load"]["file_mb"] > 490
    assert measured(result["viewer"]["first_heatmap_s"])
    assert result["viewer"]["head_bytes_1024"] == 1024 * 1025 // 2          # one head's lower triangle
    printed = capsys.readouterr().out
    assert "fast ÷ transformers" in printed and "the floor" in printed
