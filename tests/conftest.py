"""Shared fixtures: model directories built for the tests (no download), GPT-2's tokenizer and config (tests/data/gpt2),
a stand-in Hugging Face Hub on 127.0.0.1 (localhub.py), and the Chromium the browser tests drive
(their other support is in browser.py)."""

import re

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS
from hostile import install_summary
from localhub import LocalHub, use_hub
from modelfiles import GOOD_WEIGHTS_CONFIG, GPT2_FILES, small_config, write_model_dir


def pytest_configure(config):
    install_summary(config)        # the hostile-input tally, printed after the run (hostile.py)


@pytest.fixture(scope="session")
def gpt2_files():
    """tests/data/gpt2: GPT-2's real tokenizer files and config.json (its README: licence, facts)."""
    return GPT2_FILES


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
    """2 layers × 3 heads × 48 dims, context 64, vocab 100, official layout, no tokenizer."""
    path, _ = write_model_dir(tmp_path_factory.mktemp("small") / "small-2x3x48", small_config(), seed=1)
    return path


@pytest.fixture(scope="session")
def demo():
    """The bundled demo model (the one `browser.demo_server` serves), loaded in this process."""
    import gpt2np
    return gpt2np.load("demo")


@pytest.fixture(scope="session")
def good_weights_dir(tmp_path_factory):
    """2 layers × 2 heads × 32 dims, context 16, vocab 64, official layout, no tokenizer: the
    good file that the weight-loading tests copy and then break."""
    path, _ = write_model_dir(tmp_path_factory.mktemp("good") / "m", GOOD_WEIGHTS_CONFIG, seed=7,
                              tokenizer="none")
    return path


@pytest.fixture(scope="session")
def gpt2_layout_dir(tmp_path_factory, gpt2_files):
    """GPT-2 small's exact shapes and official file layout (the twelve mask buffers, no prefix,
    no lm_head, F32), random weights, the real config.json and tokenizer. About 548 MB."""
    path, _ = write_model_dir(tmp_path_factory.mktemp("gpt2layout") / "gpt2-layout-random", seed=2)
    return path


@pytest.fixture(scope="session")
def small_tok_dir(tmp_path_factory):
    """A small model (2 layers × 3 heads × 48 dims) with GPT-2's vocabulary and tokenizer and a
    1,024-token context."""
    path, _ = write_model_dir(tmp_path_factory.mktemp("small-tok") / "small-tok-1024",
                              small_config(vocab_size=50257, n_positions=1024), seed=3)
    return path


@pytest.fixture
def local_hub(monkeypatch, tmp_path):
    """A stand-in Hugging Face Hub (localhub.py) that huggingface-hub is pointed at, in this
    process and in subprocesses; HF_HOME, its cache and GPT2NP_WEIGHTS (hub.weights) in tmp_path."""
    hub = LocalHub()
    hub.weights = use_hub(monkeypatch, hub.url, tmp_path)
    yield hub
    hub.close()


@pytest.fixture(scope="module")
def browser():
    """Chromium (GPT2NP_CHROMIUM, default /usr/bin/chromium) through Playwright, one per test module."""
    from playwright import sync_api  # the test extra installs it: a missing Playwright fails, never skips
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


# -- parity figures: every parity test records its measure per named tensor; printed after the run --
PARITY_RECORDS = {}     # (test, name without its layer) -> (worst measure, bound, where)


@pytest.fixture
def parity_record(request):
    """record(name, measured, bound, where=""): keep a parity figure for the end-of-run table,
    which shows per test and per kind of tensor (all layers together) the worst figure."""
    def record(name, measured, bound, where=""):
        kind = re.sub(r"^blocks\.(\d+)\.", "blocks.*.", name)
        layer = re.match(r"^blocks\.(\d+)\.", name)
        where = f"{where} L{layer.group(1)}" if layer else where
        key = (request.node.name, kind)
        if key not in PARITY_RECORDS or measured > PARITY_RECORDS[key][0] or measured > bound:
            PARITY_RECORDS[key] = (float(measured), bound, where.strip())
    return record


def pytest_terminal_summary(terminalreporter):
    if not PARITY_RECORDS:
        return
    tr = terminalreporter
    tr.section("parity: worst max|Δ| per kind of tensor (relative to the reference's magnitude "
               "at each position; patterns absolute)")
    width = max(len(kind) for _, kind in PARITY_RECORDS)
    current = None
    for (test, kind), (measured, bound, where) in PARITY_RECORDS.items():
        if test != current:
            tr.write_line(test)
            current = test
        verdict = "OK" if measured <= bound else "FAIL"
        tr.write_line(f"  {kind:<{width}}  {measured:.2e}  (bound {bound:.0e})  {verdict}  at {where}")


@pytest.fixture(scope="session")
def small_text_model_dir(tmp_path_factory, gpt2_files):
    """2 layers × 4 heads × 64 dims, context 64, GPT-2's vocabulary and real tokenizer: a cheap
    model that takes text."""
    cfg = small_config(n_layer=2, n_head=4, n_embd=64, n_positions=64, vocab_size=50257)
    path, _ = write_model_dir(tmp_path_factory.mktemp("smalltext") / "small-text-2x4x64", cfg, seed=5)
    return path
