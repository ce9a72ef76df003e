"""Turn a model name into a local directory: a bundled model, a folder, or a Hub download.

`resolve("gpt2")` returns `weights/gpt2/` (or `$GPT2NP_WEIGHTS/gpt2/`), downloading config.json,
model.safetensors and the tokenizer from the Hugging Face Hub with `huggingface-hub` (its progress
bar, its offline switch HF_HUB_OFFLINE) the first time. For `gpt2` the revision is pinned and the
checkpoint's sha256 is verified once after download; a file that does not match is set aside and
never used. A failed download says what failed: offline, not found, the server, or the transfer.
A local directory is used as it is; `demo` is the small model bundled in the package.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import GPT2npError

PACKAGE_DIR = Path(__file__).resolve().parent.parent       # gpt2np/
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


def download(name, hub_model, target):
    """Fetch config, weights and tokenizer of a Hub model into `target` with huggingface-hub.

    Each file is first looked up with one HEAD request that is not retried, so that no network, a
    missing file and a failing server are told at once (huggingface-hub would retry for about 23 s);
    then `hf_hub_download` fetches it through a temporary file, so a broken transfer leaves no
    partial file behind. Any failure raises one GPT2npError that says which it was.
    """
    try:
        import httpx2  # noqa: F401 - huggingface-hub 2's HTTP library, whose errors download_failure reads
        from huggingface_hub import errors, get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub.utils import logging as hub_logging
    except ImportError:  # pragma: no cover - a runtime dependency
        raise GPT2npError("gpt2np downloads with huggingface-hub 2, which is not installed: "
                          "pip install -U 'huggingface-hub>=2'") from None
    target = Path(target)

    def fetch(filename, optional=False):
        """Download one file; False if it is optional and not in the repo."""
        try:
            get_hf_file_metadata(hf_hub_url(hub_model.repo_id, filename, revision=hub_model.revision))
            hf_hub_download(hub_model.repo_id, filename, revision=hub_model.revision, local_dir=target)
            return True
        except Exception as e:
            if optional and isinstance(e, errors.RemoteEntryNotFoundError):
                return False
            raise GPT2npError(download_failure(name, hub_model, target, filename, e)) from None

    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()   # no retry notices: the outcome is told in one message
    try:
        for filename in MODEL_FILES:
            fetch(filename)
        if not fetch("tokenizer.json", optional=True):
            fetch("vocab.json")
            fetch("merges.txt")
    finally:
        hub_logging.set_verbosity(verbosity)


def other_ways(target):
    """What else to do when a model's files are not in `target` and cannot be downloaded now: the
    one sentence that every such message (the CLI's failed download, the viewer's model that is
    not downloaded) ends with."""
    return (f"Or copy config.json, model.safetensors and tokenizer.json into {target}; or pass "
            "a local model directory (--model DIR); or use the bundled model that needs no "
            "download: --model demo.")


def not_downloaded(name, target):
    """A model whose files are not in `target`, for a caller that does not download (the viewer,
    corpus mode's workers): what is missing, the command that fetches it, the other ways."""
    return (f"{name} is not downloaded yet (looked in {target}); the viewer and corpus mode's "
            "workers never download. "
            f"Run `python -m gpt2np download {name}` (it needs the network). " + other_ways(target))


def download_failure(name, hub_model, target, filename, error):
    """One paragraph for a failed download: what happened to which file, and what to do next."""
    import httpx2  # its errors tell a network that cannot be reached from a transfer that broke off
    from huggingface_hub import constants, errors

    if isinstance(error, errors.LocalEntryNotFoundError) and error.__cause__ is not None:
        error = error.__cause__     # huggingface-hub's "not in the cache" wraps what went wrong
    repo = f"{hub_model.repo_id} (revision {hub_model.revision})"
    detail = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    again = f"python -m gpt2np download {name}"
    elsewhere = other_ways(target)
    if isinstance(error, errors.OfflineModeIsEnabled):
        return (f"HF_HUB_OFFLINE is set, so gpt2np does not download {repo} from the Hugging Face "
                f"Hub, and {target} does not hold the model yet. Unset HF_HUB_OFFLINE and run "
                f"`{again}`. " + elsewhere)
    if isinstance(error, (httpx2.ConnectError, httpx2.ConnectTimeout)):
        return (f"Cannot reach the Hugging Face Hub at {constants.ENDPOINT} to download {repo}: "
                f"no network, or it is blocked ({detail}). gpt2np looked for the files in {target}. "
                f"Connect and run `{again}`. " + elsewhere)
    if isinstance(error, errors.RepositoryNotFoundError):
        return (f"Model repository {hub_model.repo_id} not found on the Hugging Face Hub (or it is "
                "private or gated). Check the name: a Hub model is owner/name, e.g. "
                "openai-community/gpt2; or pass a local model directory (--model DIR).")
    if isinstance(error, errors.RevisionNotFoundError):
        return (f"Revision {hub_model.revision} of {hub_model.repo_id} not found on the Hugging "
                f"Face Hub. " + elsewhere)
    if isinstance(error, errors.RemoteEntryNotFoundError):
        return (f"File {filename} not found in {repo} on the Hugging Face Hub. gpt2np needs "
                "config.json, model.safetensors and tokenizer.json (or vocab.json + merges.txt) of "
                "a GPT-2 model; pass a repository that has them, or a local model directory "
                "(--model DIR).")
    if isinstance(error, errors.HfHubHTTPError):
        status = error.response.status_code
        side = "the server failed" if status >= 500 else "the request was refused"
        return (f"The Hugging Face Hub answered HTTP {status} for {filename} of {repo}: {side}. "
                f"Try again later: `{again}`. " + elsewhere)
    if isinstance(error, errors.FileMetadataError):
        return (f"The server at {constants.ENDPOINT} does not answer like the Hugging Face Hub "
                f"({detail}). Check HF_ENDPOINT and any proxy, then run `{again}`. " + elsewhere)
    if isinstance(error, httpx2.TransportError) or (isinstance(error, OSError) and error.errno is None):
        return (f"The download of {filename} of {repo} was incomplete: the transfer broke off "
                f"({detail}). Nothing partial was kept in {target}. Run `{again}` again.")
    if isinstance(error, OSError):
        return (f"Could not write {filename} into {target}: {error.strerror or error}. Free some "
                f"space or choose another folder with GPT2NP_WEIGHTS, then run `{again}`.")
    return (f"Could not download {filename} of {repo} from the Hugging Face Hub "
            f"({detail}). Run `{again}` again. " + elsewhere)


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
            raise GPT2npError(not_downloaded(name, target))
        download(name, hub_model, target)
    if hub_model.sha256:
        verify_sha256(target / "model.safetensors", hub_model.sha256)
    origin = f"Hugging Face Hub {hub_model.repo_id}@{hub_model.revision[:7]}, cached in {target}"
    return ModelSource(name, target, origin, "official" if hub_model.sha256 else "hub")
