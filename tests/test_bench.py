"""The benchmark runs end to end and reports what it says it reports. No timing is judged here."""

import json
import math

from gpt2np import bench


def test_bench_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--tokens", "16", "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    (row,) = result["forward"]
    assert row["T"] == 16
    for phase, impls in (("quiet", bench.IMPLEMENTATIONS), ("busy", bench.BUSY_IMPLEMENTATIONS)):
        assert set(row[phase]) == set(impls), phase
        for impl, times in row[phase].items():
            assert len(times["runs_s"]) == 1 and all(math.isfinite(s) and s > 0 for s in times["runs_s"]), impl
            assert times["min_s"] <= times["median_s"] <= times["max_s"], impl
    assert abs(row["ratios"]["fast/transformers"]
               - row["quiet"]["fast"]["median_s"] / row["quiet"]["transformers"]["median_s"]) < 1e-12
    assert 490e6 < result["bandwidth"]["weights_MB"] * 1e6 < 510e6       # GPT-2 small's F32 weights
    assert result["load"]["file_mb"] > 490
    assert result["viewer"]["head_bytes_1024"] < 1_000_000
    printed = capsys.readouterr().out
    assert "fast ÷ transformers" in printed and "the floor" in printed
