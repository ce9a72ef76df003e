"""The command line, run as a user runs it: `python -m gpt2np "sentence" [options]`."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import gpt2np

SENTENCE = "The trophy doesn't fit in the suitcase because it is too big."


def run(*args):
    return subprocess.run([sys.executable, "-m", "gpt2np", *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))


@pytest.fixture(scope="module")
def model(small_text_model_dir):
    return gpt2np.load(small_text_model_dir)


def test_text_output(small_text_model_dir, model):
    r = run("--model", str(small_text_model_dir), SENTENCE)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"model: {model.info.describe()}" in out
    assert '1:" trophy"' in out and '13:"."' in out
    trace = model.run(SENTENCE)
    best = int(np.argmax(trace.logits[-1]))
    assert f"1. {json.dumps(model.tokenizer.token_string(best), ensure_ascii=False)}" in out
    assert "most on position 0" in out
    assert len([ln for ln in out.splitlines() if ln.strip().startswith(("0 ", "1 "))]) >= 2


def test_json_output_matches_the_api(small_text_model_dir, model):
    r = run("--model", str(small_text_model_dir), SENTENCE, "--json", "--layer", "1", "--head", "2",
            "--query", "9", "--top-k", "3")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    trace = model.run(SENTENCE)
    assert data["ids"] == trace.ids.tolist() and data["tokens"] == trace.tokens
    assert data["model"]["n_params"] == model.info.n_params
    probs = np.exp(trace.logits[-1].astype(np.float64) - trace.logits[-1].max())
    probs /= probs.sum()
    assert [t["id"] for t in data["next_token"]] == np.argsort(-probs)[:3].tolist()
    assert abs(data["next_token"][0]["p"] - probs.max()) < 1e-9
    np.testing.assert_allclose(data["pattern"]["weights"], trace.pattern(1, 2), atol=1e-7)
    row = trace.pattern(1, 2)[9].astype(np.float64)                 # query 9 sees keys 0..9
    keys = sorted(range(10), key=lambda j: (-row[j], j))[:3]
    assert [k["position"] for k in data["query"]["keys"]] == keys
    assert [k["weight"] for k in data["query"]["keys"]] == pytest.approx([row[j] for j in keys], abs=1e-7)
    sink = trace.pattern(0)[:, 1:, 0].astype(np.float64).mean(-1)     # mean weight on position 0
    assert data["layers"][0]["sink_head"] == int(sink.argmax())


def test_text_heatmap_and_query(small_text_model_dir):
    r = run("--model", str(small_text_model_dir), SENTENCE, "--layer", "0", "--head", "1", "--query", "9")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("layer 0 head 1 attention pattern"))
    rows = lines[start + 2:start + 2 + 14]
    assert rows[0].startswith('   0 "The"') and rows[0].endswith("|█-------------|")
    assert all(row.count("-") == 13 - i for i, row in enumerate(rows))  # masked cells above the diagonal
    assert 'top 5 keys of query 9 " it"' in r.stdout


def test_save_npz(small_text_model_dir, model, tmp_path):
    path = tmp_path / "trace.npz"
    r = run("--model", str(small_text_model_dir), SENTENCE, "--save", str(path))
    assert r.returncode == 0 and path.is_file()
    saved = gpt2np.Trace.load(path)
    trace = model.run(SENTENCE)
    assert saved.names() == trace.names() and saved.tokens == trace.tokens
    np.testing.assert_array_equal(saved["blocks.1.attn.hook_pattern"], trace["blocks.1.attn.hook_pattern"])


def test_bos(small_text_model_dir):
    r = run("--model", str(small_text_model_dir), "Hello", "--bos", "--json")
    assert json.loads(r.stdout)["ids"][0] == 50256


@pytest.mark.parametrize("args, phrase", [
    (["",], "The text is empty"),
    (["word" + " word" * 69], "Too many tokens: 70, but small-text-2x4x64 has a context of 64"),
    (["hi", "--layer", "5", "--head", "0"], "There is no head 5.0: this model has layers 0–1"),
    (["hi", "--layer", "0", "--head", "9"], "There is no head 0.9: this model has layers 0–1 and heads 0–3"),
    (["hi", "--layer", "0"], "--layer and --head go together"),
    (["hi", "--query", "0"], "--query needs --layer"),
    (["hi", "--layer", "0", "--head", "0", "--query", "4"], "--query 4 is out of range"),
    (["hi", "--top-k", "0"], "--top-k must be at least 1"),
])
def test_errors_exit_2_with_one_line(small_text_model_dir, args, phrase):
    r = run("--model", str(small_text_model_dir), *args)
    assert r.returncode == 2
    assert phrase in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_bad_option_value_exits_2():
    r = run("hi", "--layer", "x")
    assert r.returncode == 2 and "invalid int value" in r.stderr


def test_console_script_installed():
    exe = shutil.which("gpt2np") or os.path.join(os.path.dirname(sys.executable), "gpt2np")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--model" in r.stdout


def test_top_keys_of_a_query_are_only_keys_up_to_it():
    """`--query 3` on a 7-token sentence: at most 4 keys (0..3), each ranked by its weight, and a
    line saying why there are fewer than 5; keys after the query are masked, never listed."""
    text, query = "Mr. Darcy and Miss Bennet walked", 3
    demo = gpt2np.load("demo")
    trace = demo.run(text)
    assert trace.n_tokens > query + 1 + 1                  # keys after the query exist
    head = min(6, demo.config.n_head - 1)
    r = run("--model", "demo", "--layer", "0", "--head", str(head), "--query", str(query), text)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    start = lines.index(f"top 5 keys of query {query} {json.dumps(trace.tokens[query])}:")
    listed = [int(ln.split()[0]) for ln in lines[start + 1:start + 5]]
    p = trace.pattern(0, head)[query]
    assert listed == sorted(range(query + 1), key=lambda j: (-p[j], j))
    assert lines[start + 5] == (f"  only {query + 1} keys precede or equal query {query}: "
                                "the causal mask hides later ones")
    assert lines[start + 6:start + 7] in ([], [""])        # nothing else in the list

    data = json.loads(run("--model", "demo", "--layer", "0", "--head", str(head), "--query", "0",
                          "--json", text).stdout)["query"]
    assert data["n_keys"] == 1 and [k["position"] for k in data["keys"]] == [0]
    r = run("--model", "demo", "--layer", "0", "--head", str(head), "--query", str(query), "--top-k", "2", text)
    assert "only" not in r.stdout.split(f"top 2 keys of query {query}")[1]
