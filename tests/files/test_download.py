"""Downloading from the Hub, against a stand-in Hub on 127.0.0.1 (localhub.py; the `local_hub`
fixture points huggingface-hub at it): where the files land, the pinned revision and sha256 of
`gpt2`, the vocab.json + merges.txt fallback, and one clear message per kind of failure."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from localhub import closed_port, set_offline, use_hub
from modelfiles import GPT2_FILES, small_config, write_model_dir
from tokenizers import Tokenizer

import gpt2np
from gpt2np.files import hub

PINNED = "607a30d783dfa663caf39e06633721c8d4cfcd7e"    # openai-community/gpt2, as the README says
TINY = small_config(n_layer=1, n_head=2, n_embd=16, n_positions=16, vocab_size=50257)
TOKENIZER = ("config.json", "model.safetensors", "tokenizer.json")

# Each kind of failure, told by its own words and by none of the others'.
KINDS = {"offline": "HF_HUB_OFFLINE is set", "unreachable": "Cannot reach",
         "not found": "not found", "server": "the server failed", "incomplete": "was incomplete"}


def kinds(message):
    return {kind for kind, words in KINDS.items() if words in message}


def run_cli(*args):
    """python -m gpt2np in a subprocess, with the environment the fixtures set."""
    return subprocess.run([sys.executable, "-m", "gpt2np", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


def one_error_line(r):
    """Exit status 2 and exactly one line on stderr, the error (no retry notices, no traceback)."""
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("gpt2np: error: "), r.stderr
    return lines[0].removeprefix("gpt2np: error: ")


def served(tmp_path, name, cfg=TINY, **kw):
    """A model directory the local Hub serves; returns (path, its random parameters)."""
    return write_model_dir(tmp_path / "served" / name, cfg, seed=len(name), **kw)


def no_partial_file(target):
    assert not hub.is_complete(target) and not (target / "model.safetensors").exists()
    assert not [p for p in target.rglob("*") if p.name.endswith(".incomplete")]


def test_repo_id_downloads_into_its_folder_then_loads_offline(local_hub, tmp_path, monkeypatch):
    source, params = served(tmp_path, "tiny")
    local_hub.add_repo("someone/tiny-gpt2", source)
    r = run_cli("download", "someone/tiny-gpt2")
    target = local_hub.weights / "someone--tiny-gpt2"
    assert r.returncode == 0 and f"ready in {target}" in r.stdout, r.stderr
    for name in TOKENIZER:
        assert (target / name).read_bytes() == (source / name).read_bytes()
    requests = [r for r in local_hub.requests if r.repo_id]
    assert {(r.repo_id, r.revision) for r in requests} == {("someone/tiny-gpt2", "main")}
    assert {r.filename for r in requests if r.method == "GET"} == set(TOKENIZER)

    local_hub.requests.clear()
    set_offline(monkeypatch)
    model = gpt2np.load("someone/tiny-gpt2")
    assert np.array_equal(model.params["wte.weight"], params["wte.weight"])
    assert "someone/tiny-gpt2" in model.info.origin and str(target) in model.info.origin
    r = run_cli("--model", "someone/tiny-gpt2", "--json", "Hello world")
    assert r.returncode == 0, r.stderr
    assert local_hub.requests == []


def test_gpt2_is_fetched_at_the_pinned_revision_and_a_wrong_checkpoint_is_refused(local_hub, tmp_path):
    """The served file is not the official checkpoint: refused right after the download, set
    aside, and on the next run downloaded and refused again, never loaded."""
    source, _ = served(tmp_path, "gpt2")
    local_hub.add_repo("openai-community/gpt2", source, commit=PINNED)
    served_sha = hub.sha256_of(source / "model.safetensors")
    target = local_hub.weights / "gpt2"
    for _ in range(2):
        local_hub.requests.clear()
        message = one_error_line(run_cli("download", "gpt2"))
        assert f"sha256 is {served_sha}, expected 248dfc39" in message
        assert {(r.repo_id, r.revision) for r in local_hub.requests if r.repo_id} == {
            ("openai-community/gpt2", PINNED)}
        assert ("GET", "model.safetensors", 200) in local_hub.file_requests()
        assert not (target / "model.safetensors").exists()
        assert hub.sha256_of(target / "model.safetensors.sha256-mismatch") == served_sha
    with pytest.raises(gpt2np.GPT2npError, match=f"sha256 is {served_sha}"):
        gpt2np.load("gpt2")


def test_gpt2_with_the_expected_sha256_is_verified_right_after_download(local_hub, tmp_path, monkeypatch):
    source, params = served(tmp_path, "gpt2")
    local_hub.add_repo("openai-community/gpt2", source, commit=PINNED)
    served_sha = hub.sha256_of(source / "model.safetensors")
    monkeypatch.setitem(hub.KNOWN_MODELS, "gpt2", hub.HubModel("openai-community/gpt2", PINNED, served_sha))
    directory = hub.resolve("gpt2").directory
    assert directory == local_hub.weights / "gpt2"
    assert (directory / "model.safetensors.sha256-ok").read_text().startswith(served_sha)
    local_hub.requests.clear()
    set_offline(monkeypatch)
    model = gpt2np.load("gpt2")
    assert np.array_equal(model.params["h.0.attn.c_attn.weight"], params["h.0.attn.c_attn.weight"])
    assert f"openai-community/gpt2@{PINNED[:7]}" in model.info.origin
    assert local_hub.requests == []


def test_vocab_and_merges_when_the_repo_has_no_tokenizer_json(local_hub, tmp_path):
    source, _ = served(tmp_path, "bpe", tokenizer="bpe")
    local_hub.add_repo("someone/bpe-gpt2", source)
    model = gpt2np.load("someone/bpe-gpt2")
    target = local_hub.weights / "someone--bpe-gpt2"
    assert ("HEAD", "tokenizer.json", 404) in local_hub.file_requests()
    assert not (target / "tokenizer.json").exists()
    for name in ("vocab.json", "merges.txt"):
        assert (target / name).read_bytes() == (GPT2_FILES / name).read_bytes()
    text = "The trophy doesn't fit in the suitcase."
    assert model.encode(text) == Tokenizer.from_file(str(GPT2_FILES / "tokenizer.json")).encode(text).ids


@pytest.mark.parametrize("fault, kind", [("404", "not found"), ("500", "server"),
                                         ("drop", "incomplete"), ("short", "incomplete")])
def test_a_failed_download_says_what_failed_and_leaves_no_partial_file(local_hub, tmp_path, monkeypatch,
                                                                        fault, kind):
    source, params = served(tmp_path, "tiny")
    local_hub.add_repo("someone/tiny-gpt2", source)
    local_hub.fail("model.safetensors", fault)
    target = local_hub.weights / "someone--tiny-gpt2"
    message = one_error_line(run_cli("download", "someone/tiny-gpt2"))
    assert kinds(message) == {kind}
    assert "model.safetensors" in message and "someone/tiny-gpt2" in message
    if fault in ("404", "500"):   # told at the first answer, not after huggingface-hub's retries
        assert [r for r in local_hub.file_requests() if r[2] != 200] == [
            ("HEAD", "model.safetensors", int(fault))]
    no_partial_file(target)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)   # huggingface-hub's resume retries
    with pytest.raises(gpt2np.GPT2npError) as info:
        gpt2np.load("someone/tiny-gpt2")
    assert kinds(str(info.value)) == {kind}
    no_partial_file(target)

    local_hub.faults.clear()
    local_hub.requests.clear()
    model = gpt2np.load("someone/tiny-gpt2")
    assert ("GET", "model.safetensors", 200) in local_hub.file_requests()
    assert (target / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    assert np.array_equal(model.params["wte.weight"], params["wte.weight"])


def test_offline_switch_sends_nothing(local_hub, monkeypatch):
    set_offline(monkeypatch)
    message = one_error_line(run_cli("download", "someone/tiny-gpt2"))
    assert kinds(message) == {"offline"} and "--model demo" in message
    assert str(local_hub.weights / "someone--tiny-gpt2") in message
    with pytest.raises(gpt2np.GPT2npError) as info:
        gpt2np.load("someone/tiny-gpt2")
    assert kinds(str(info.value)) == {"offline"}
    assert local_hub.requests == []


def test_a_failure_is_not_blamed_on_hf_hub_offline_when_it_is_not_offline(local_hub, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 set after huggingface-hub was imported (as in a notebook) does not stop
    it: the Hub is asked, and what it answers is what the message says."""
    source, _ = served(tmp_path, "tiny")
    local_hub.add_repo("someone/tiny-gpt2", source)
    local_hub.fail("model.safetensors", "500")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(gpt2np.GPT2npError) as info:
        gpt2np.load("someone/tiny-gpt2")
    assert kinds(str(info.value)) == {"server"} and "HF_HUB_OFFLINE" not in str(info.value)
    assert ("HEAD", "model.safetensors", 500) in local_hub.file_requests()


def test_no_network_is_told_at_once(monkeypatch, tmp_path):
    """Nothing listens at the endpoint: the message says the Hub cannot be reached, without
    huggingface-hub's retries (whose notices would be more lines on stderr)."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    weights = use_hub(monkeypatch, endpoint, tmp_path)
    message = one_error_line(run_cli("download", "gpt2"))
    assert kinds(message) == {"unreachable"} and endpoint in message
    assert "python -m gpt2np download gpt2" in message and str(weights / "gpt2") in message
    sleeps = []
    monkeypatch.setattr(time, "sleep", sleeps.append)   # huggingface-hub waits between retries
    with pytest.raises(gpt2np.GPT2npError) as info:
        gpt2np.load("gpt2")
    assert kinds(str(info.value)) == {"unreachable"} and sleeps == []


def test_unknown_repo_and_unknown_revision_are_not_found(local_hub, tmp_path):
    source, _ = served(tmp_path, "gpt2")
    local_hub.add_repo("openai-community/gpt2", source)            # no commit PINNED there
    with pytest.raises(gpt2np.GPT2npError) as info:
        gpt2np.load("gpt2")
    assert kinds(str(info.value)) == {"not found"} and f"Revision {PINNED}" in str(info.value)
    with pytest.raises(gpt2np.GPT2npError) as info:
        gpt2np.load("nobody/nothing")
    assert kinds(str(info.value)) == {"not found"} and "repository nobody/nothing" in str(info.value)
    assert {(r.method, r.repo_id, r.revision, r.filename) for r in local_hub.requests if r.repo_id} == {
        ("HEAD", "openai-community/gpt2", PINNED, "config.json"),
        ("HEAD", "nobody/nothing", "main", "config.json")}
