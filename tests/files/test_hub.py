"""Getting the real weights without a network: offline messages, the pinned sha256 check, the
weights folder. (Downloads, against a stand-in Hub, are in test_download.py.)"""

import os
import subprocess
import sys

import pytest
from localhub import closed_port, use_hub
from modelfiles import small_config, write_model_dir

import gpt2np
from gpt2np.files import hub


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1 (and the endpoint a closed port); returns the weights folder."""
    return use_hub(monkeypatch, f"http://127.0.0.1:{closed_port()}", tmp_path, offline=True)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gpt2np", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


def test_offline_message_and_exit_status(offline):
    """No weights, HF_HUB_OFFLINE=1: exit 2, one clear message that says what was tried, where
    the files are expected and how to proceed."""
    r = run_cli("--model", "gpt2", "hello")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "openai-community/gpt2" in r.stderr and "HF_HUB_OFFLINE is set" in r.stderr
    assert str(offline / "gpt2") in r.stderr
    assert "--model demo" in r.stderr and "python -m gpt2np download gpt2" in r.stderr


def test_download_command_offline(offline):
    r = run_cli("download", "distilgpt2")
    assert r.returncode == 2 and "distilbert/distilgpt2" in r.stderr and "Traceback" not in r.stderr


def test_weights_dir_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("GPT2NP_WEIGHTS", raising=False)
    assert hub.weights_dir() == hub.PACKAGE_DIR.parent / "weights"
    monkeypatch.setenv("GPT2NP_WEIGHTS", str(tmp_path))
    assert hub.weights_dir() == tmp_path


def test_placed_files_are_used_without_download(monkeypatch, offline):
    """Files copied into $GPT2NP_WEIGHTS/<name>/ are used offline (here a small stand-in whose
    sha256 is made the expected one, since the real 548 MB file is not available)."""
    write_model_dir(offline / "gpt2", small_config(vocab_size=50257), seed=1)
    real = hub.KNOWN_MODELS["gpt2"]
    monkeypatch.setitem(hub.KNOWN_MODELS, "gpt2", hub.HubModel(
        real.repo_id, real.revision, hub.sha256_of(offline / "gpt2" / "model.safetensors")))
    model = gpt2np.load("gpt2")
    assert model.info.name == "gpt2" and "openai-community/gpt2@607a30d" in model.info.origin
    assert model.info.kind == "official"                        # pinned and sha256-checked
    assert (offline / "gpt2" / "model.safetensors.sha256-ok").is_file()   # verified once, remembered
    gpt2np.load("gpt2")


def test_sha256_mismatch_sets_the_file_aside(offline):
    write_model_dir(offline / "gpt2", small_config(vocab_size=50257), seed=1)
    with pytest.raises(gpt2np.GPT2npError, match="sha256 is .* expected 248dfc39") as info:
        gpt2np.load("gpt2")
    assert "will not be used" in str(info.value)
    assert not (offline / "gpt2" / "model.safetensors").exists()
    assert (offline / "gpt2" / "model.safetensors.sha256-mismatch").is_file()
    with pytest.raises(gpt2np.GPT2npError, match="HF_HUB_OFFLINE is set"):   # not used on the next try
        gpt2np.load("gpt2")


def test_hub_repo_id_goes_to_its_own_folder(offline):
    with pytest.raises(gpt2np.GPT2npError, match="someone/tiny-gpt2") as info:
        gpt2np.load("someone/tiny-gpt2")
    assert str(offline / "someone--tiny-gpt2") in str(info.value)


def test_not_downloaded_and_no_download_allowed(offline):
    with pytest.raises(gpt2np.GPT2npError, match="python -m gpt2np download someone/tiny-gpt2"):
        gpt2np.load("someone/tiny-gpt2", allow_download=False)


def test_local_directory_is_used_as_is(small_model_dir):
    source = hub.resolve(str(small_model_dir))
    assert source.directory == small_model_dir and source.origin.startswith("local directory")
    assert source.kind == "local" and hub.resolve("demo").kind == "demo"


def test_a_hub_model_without_a_pin_is_kind_hub(monkeypatch, tmp_path):
    write_model_dir(tmp_path / "distilgpt2", small_config(vocab_size=50257), seed=1)
    monkeypatch.setenv("GPT2NP_WEIGHTS", str(tmp_path))
    assert hub.resolve("distilgpt2").kind == "hub"
    write_model_dir(tmp_path / "someone--tiny-gpt2", small_config(vocab_size=50257), seed=1)
    assert hub.resolve("someone/tiny-gpt2").kind == "hub"
