"""`python -m gpt2np patch`: the text output of a demo pair holds the library's numbers with the
token labels, --json holds PatchResult.to_dict(), progress goes to stderr only, Ctrl+C stops with
one line and exit 130, and user errors are one line with exit 2. The pair is the demo model's own
(its card, through examples_for) and a one-token swap chosen with its tokenizer (demofacts)."""

import json
import re

import numpy as np
import pytest
from demofacts import one_token_swap

from gpt2np import cli
from gpt2np.analysis.examples import examples_for
from gpt2np.analysis.patching import SITES, patch
from gpt2np.cli import options

TEXT = "The little girl went into the garden and she"


def run_cli(capsys, *args):
    code = cli.main(["patch", "--model", "demo", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def pair(demo):
    ex = examples_for(demo)["pair"]
    return ex["clean"], ex["corrupted"], ex["answer"], ex["versus"]


@pytest.fixture(scope="module")
def result(demo, pair):
    return patch(demo, *pair, head=None)


def grid_block(out, site):
    """The heatmap lines of `site` in the text output: {row label: [numbers]} and the tokens line."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{site}: "))
    tokens = lines[start + 1] if lines[start + 1].startswith("  tokens: ") else None
    rows, i = {}, start + (3 if tokens else 2)
    while i < len(lines) and lines[i].strip():
        label, rest = lines[i].split(" ", 1)
        rows[label] = [float(x) for x in re.findall(r"-?\d+\.\d\d", rest)]
        i += 1
    return rows, tokens


def test_text_output_holds_the_librarys_numbers_and_token_labels(demo, pair, result, capsys):
    code, out, err = run_cli(capsys, pair[0], pair[1], "--answer", pair[2], "--versus", pair[3])
    assert code == 0 and err == ""                        # not a terminal: no progress bar
    assert f"clean run      LD = {result.ld_clean:.4f}" in out
    assert f"corrupted run  LD = {result.ld_corrupted:.4f}" in out
    assert f'LD = logit({json.dumps(pair[2])}) − logit({json.dumps(pair[3])}) at position {result.position}' in out
    assert "0 = no effect" in out and "1 = the patch restores the clean answer" in out
    assert list(result.grids) == list(SITES)
    for site, g in result.grids.items():
        rows, tokens = grid_block(out, site)
        assert list(rows) == [r.replace("layer ", "L") for r in g.rows]
        printed = np.array(list(rows.values()))
        assert printed.shape == g.normalized.shape
        assert np.abs(printed - g.normalized).max() <= 0.005 + 1e-9     # two decimals, rounded
        if site in ("z", "pattern"):
            assert tokens is None
        else:                                          # every token, both where the pair differs
            assert tokens == "  tokens: " + "  ".join(g.columns)
            for t, (a, b) in enumerate(zip(demo.token_strings(demo.encode(pair[0])),
                                           demo.token_strings(demo.encode(pair[1])))):
                assert (f"{t}: {a!r}" if a == b else f"{t}: {a!r} → {b!r}") in tokens
    top = out[out.index("the 10 cells that restore most:"):].splitlines()[2:]
    assert len(top) == 10
    for line, c in zip(top, result.top(10)):
        assert line.split()[0] == c["site"] and c["column"] in line
        assert line.split()[-2:] == [f"{c['normalized']:.4f}", f"{c['ld']:.4f}"]


def test_example_is_the_models_own_pair(pair, capsys):
    code, by_example, _ = run_cli(capsys, "--example", "--sites", "z")
    code2, by_hand, _ = run_cli(capsys, pair[0], pair[1], "--answer", pair[2], "--versus", pair[3],
                                "--sites", "z")
    assert code == code2 == 0 and by_example == by_hand


def test_json_is_the_patch_result(demo, pair, result, capsys):
    code, out, err = run_cli(capsys, pair[0], pair[1], "--answer", pair[2], "--versus", pair[3], "--json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["model"] == "demo" and data["engine"] == demo.engine
    assert {k: data[k] for k in result.to_dict()} == json.loads(json.dumps(result.to_dict()))
    assert data["top"] == result.top(10)


def test_head_adds_the_per_position_grid_and_progress_stays_on_stderr(demo, capsys):
    other, k = one_token_swap(demo, TEXT)
    change = demo.run(TEXT).logits[-1] - demo.run(other).logits[-1]
    as_text = [s for s in demo.token_strings(np.argsort(-change).tolist()) if demo.encode(s) and
               len(demo.encode(s)) == 1]                  # tokens typed as text: those that round-trip
    answer, versus = as_text[0], as_text[-1]
    head = f"{demo.config.n_layer - 1}.0"
    code, out, err = run_cli(capsys, TEXT, other, "--answer", answer, "--versus", versus,
                             "--head", head, "--json", "--progress")
    assert code == 0
    data = json.loads(out)                               # stdout is the JSON alone
    expected = patch(demo, TEXT, other, answer, versus, head=head)
    assert data["grids"]["z_position"] == expected.grids["z_position"].to_dict()
    n_runs = sum(g.ld.size for g in expected.grids.values())
    assert f"{n_runs}/{n_runs}" in err and "run" in err  # tqdm's last state, on stderr


def test_ctrl_c_stops_with_one_line(pair, capsys, monkeypatch):
    def interrupt(self, done, total):
        self.done = done
        if done == 3:
            raise KeyboardInterrupt
    monkeypatch.setattr(options.ProgressBar, "__call__", interrupt)
    code, out, err = run_cli(capsys, "--example")
    assert code == 130 and out == ""
    assert err.strip().splitlines() == [
        "gpt2np patch: interrupted after 3 patched runs; nothing was printed. Run the same command "
        "again to start over."]


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpt2np: error: "), err
    return lines[0]


def test_different_token_counts_show_both_tokenizations(demo, pair, capsys):
    longer = pair[1] + " and then"
    code, out, err = run_cli(capsys, pair[0], longer, "--answer", pair[2], "--versus", pair[3])
    line = one_error_line(err)
    assert code == 2 and out == ""
    for text in (pair[0], longer):
        ids = demo.encode(text)
        assert f"{len(ids)} (" + " | ".join(repr(t) for t in demo.token_strings(ids)) + ")" in line


@pytest.mark.parametrize("args, expected", [
    (["--answer", "ANSWER_MULTI"], "tokens ("),
    ([], "Give CLEAN and CORRUPTED"),
    (["--answer", None], "Give --answer and --versus"),
    (["--workers", "2"], "--workers goes with --pairs"),
    (["--sites", "resid_pre,nope"], "Unknown patching site 'nope'"),
    (["--head", "99.0"], "There is no head"),
    (["--position", "99"], "99"),
    (["--top", "0"], "--top must be at least 1"),
])
def test_user_errors_are_one_line_and_exit_2(demo, pair, args, expected, capsys):
    ex = examples_for(demo)["pair"]
    clean, corrupted, answer, versus = pair
    argv = [clean, corrupted, "--answer", answer, "--versus", versus]
    if args == []:
        argv = ["--answer", answer, "--versus", versus]
    elif args[:2] == ["--answer", None]:
        argv = [clean, corrupted, "--versus", versus]
    elif args[:2] == ["--answer", "ANSWER_MULTI"]:
        argv = [clean, corrupted, "--answer", clean.split()[0] + clean, "--versus", versus]
    else:
        argv += args
    code, out, err = run_cli(capsys, *argv)
    line = one_error_line(err)
    assert code == 2 and out == "" and expected in line
    if expected in ("tokens (", "Give CLEAN and CORRUPTED", "Give --answer and --versus"):
        assert repr(ex["answer"]) in line and repr(ex["versus"]) in line    # the model's own pair as hint
