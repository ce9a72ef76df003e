"""The benchmark runs end to end and reports what it says it reports. No timing is judged here."""

import json

from gpt2np import bench


def test_bench_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--tokens", "16", "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    (row,) = result["forward"]
    assert row["T"] == 16
    for key in ("gpt2np_s", "transformers_s", "products_gpt2np_s", "products_torch_s"):
        assert 0 < row[key] < 120, key
    assert abs(row["ratio"] - row["gpt2np_s"] / row["transformers_s"]) < 1e-12
    assert 490e6 < result["bandwidth"]["weights_MB"] * 1e6 < 510e6       # GPT-2 small's F32 weights
    assert result["load"]["file_mb"] > 490
    assert result["viewer"]["head_bytes_1024"] < 1_000_000
    printed = capsys.readouterr().out
    assert "ratio" in printed and "the floor" in printed
