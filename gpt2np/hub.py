"""Turn a model name into a local directory: a bundled model, a folder, or a Hub download.

`resolve("gpt2")` returns `weights/gpt2/` (or `$GPT2NP_WEIGHTS/gpt2/`), downloading config.json,
model.safetensors and the tokenizer from the Hugging Face Hub with `huggingface-hub` (its progress
bar, its offline switch HF_HUB_OFFLINE) the first time. For `gpt2` the revision is pinned and the
checkpoint's sha256 is verified once after download; a file that does not match is set aside and
never used. A local directory is used as it is; `demo` is the small model bundled in the package.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import GPT2npError

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DIR = PACKAGE_DIR / "demo"
MODEL_FILES = ("config.json", "model.safetensors")


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    revision: str = "main"
    sha256: str | None = None      # of model.safetensors at that revision, when known


KNOWN_MODELS = {
    "gpt2": HubModel("openai-community/gpt2", "607a30d783dfa663caf39e06633721c8d4cfcd7e",
                     "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707"),
    "distilgpt2": HubModel("distilbert/distilgpt2"),
    "gpt2-medium": HubModel("openai-community/gpt2-medium"),
    "gpt2-large": HubModel("openai-community/gpt2-large"),
    "gpt2-xl": HubModel("openai-community/gpt2-xl"),
}


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are, and how to describe them to a user."""
    name: str           # short name shown everywhere ("gpt2", "demo", a folder's name)
    directory: Path
    origin: str         # one line: where the files came from
    kind: str           # "demo" (bundled), "official" (pinned, sha256-checked), "hub" or "local"


def weights_dir():
    """The download cache: $GPT2NP_WEIGHTS, else the repository's weights/, else ~/.cache/gpt2np."""
    if os.environ.get("GPT2NP_WEIGHTS"):
        return Path(os.environ["GPT2NP_WEIGHTS"]).expanduser()
    repo = PACKAGE_DIR.parent
    if (repo / "pyproject.toml").is_file():
        return repo / "weights"
    return Path.home() / ".cache" / "gpt2np"


def is_complete(directory):
    d = Path(directory)
    return (all((d / f).is_file() for f in MODEL_FILES)
            and ((d / "tokenizer.json").is_file()
                 or ((d / "vocab.json").is_file() and (d / "merges.txt").is_file())))


def sha256_of(path, chunk=1 << 22):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path, expected):
    """Check a file's sha256 once; remember the result beside it (keyed by size and mtime).

    A mismatch renames the file to `*.sha256-mismatch` so it is never used, and raises.
    """
    path = Path(path)
    stat = path.stat()
    stamp = f"{expected} {stat.st_size} {stat.st_mtime_ns}"
    marker = path.with_name(path.name + ".sha256-ok")
    if marker.is_file() and marker.read_text().strip() == stamp:
        return
    got = sha256_of(path)
    if got != expected:
        bad = path.with_name(path.name + ".sha256-mismatch")
        path.replace(bad)
        raise GPT2npError(
            f"{path}: sha256 is {got}, expected {expected}. The file is not the pinned official "
            f"checkpoint (corrupt or incomplete download); it was moved to {bad.name} and will "
            "not be used. Download it again: python -m gpt2np download")
    marker.write_text(stamp + "\n")


def download(hub_model, target):
    """Fetch config, weights and tokenizer of a Hub model into `target` with huggingface-hub."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError
    except ImportError:  # pragma: no cover - a runtime dependency
        raise GPT2npError("huggingface-hub is not installed: pip install huggingface-hub") from None
    target = Path(target)
    fetch = lambda name: hf_hub_download(  # noqa: E731
        hub_model.repo_id, name, revision=hub_model.revision, local_dir=target)
    try:
        for name in MODEL_FILES:
            fetch(name)
        try:
            fetch("tokenizer.json")
        except EntryNotFoundError:
            fetch("vocab.json")
            fetch("merges.txt")
    except Exception as e:  # offline mode, no network, 404, disk full: all told the same way
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set" if offline else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise GPT2npError(
            f"Could not download {hub_model.repo_id} (revision {hub_model.revision[:12]}) from the "
            f"Hugging Face Hub ({why}). gpt2np looked for config.json, model.safetensors and "
            f"tokenizer.json in {target}. To proceed: connect and run `python -m gpt2np download "
            f"{target.name}`; or copy those files into {target}; or pass a local model directory "
            "(--model DIR); or try the bundled model that needs no download: --model demo.") from None


def resolve(name, allow_download=True):
    """Name, Hub repo id or directory -> ModelSource whose directory holds the model's files."""
    name = str(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSource(path.resolve().name, path.resolve(), f"local directory {path.resolve()}", "local")
    if name == "demo":
        if not is_complete(DEMO_DIR):
            raise GPT2npError(f"The bundled demo model is missing from {DEMO_DIR}; reinstall "
                              "gpt2np, or train it: python scripts/train_demo_model.py")
        return ModelSource("demo", DEMO_DIR, "bundled demo model, trained in this repository — not GPT-2",
                           "demo")

    if name in KNOWN_MODELS:
        hub_model, target = KNOWN_MODELS[name], weights_dir() / name
    elif name.count("/") == 1 and not name.startswith((".", "/", "~")):
        hub_model, target = HubModel(name), weights_dir() / name.replace("/", "--")
    else:
        raise GPT2npError(
            f"Unknown model {name!r}: not a directory, not a known name "
            f"({', '.join(['demo', *KNOWN_MODELS])}), not a Hub repo id (owner/name).")

    if not is_complete(target):
        if not allow_download:
            raise GPT2npError(f"{name} is not downloaded yet (looked in {target}). Run: "
                              f"python -m gpt2np download {name}")
        download(hub_model, target)
    if hub_model.sha256:
        verify_sha256(target / "model.safetensors", hub_model.sha256)
    origin = f"Hugging Face Hub {hub_model.repo_id}@{hub_model.revision[:7]}, cached in {target}"
    return ModelSource(name, target, origin, "official" if hub_model.sha256 else "hub")
