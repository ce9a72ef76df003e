"""A stand-in for the Hugging Face Hub on 127.0.0.1, for the download tests.

It serves model directories the way huggingface-hub's `hf_hub_download` reads them:
`HEAD` and `GET /{repo_id}/resolve/{revision}/{filename}` answer with `X-Repo-Commit`, `ETag` (the
git blob sha1, or for a `.safetensors` file its sha256, as the Hub does for LFS files) and
`Content-Length`; an unknown repo, revision or file answers 404 with the `X-Error-Code` the Hub
sends (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`), from which huggingface-hub picks its
exception class. A repo answers its own commit hash and `main`.

Every request is logged (`hub.requests`), and any file can be made to fail (`hub.fail`):
  "404"   the file is not in the repo (HEAD and GET)
  "500"   the server fails (HEAD and GET)
  "drop"  GET sends the headers and half the body, then resets the connection
  "short" GET announces the full Content-Length, sends half the body and closes the connection

`use_hub` points huggingface-hub at an endpoint, for this process and for subprocesses.
"""

import hashlib
import socket
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

FAULTS = ("404", "500", "drop", "short")


@dataclass(frozen=True)
class Request:
    method: str
    repo_id: str | None     # None: not a file request (huggingface-hub also asks /api/... once)
    revision: str | None
    filename: str | None
    status: int
    path: str


def use_hub(monkeypatch, endpoint, home, offline=False):
    """Point huggingface-hub at `endpoint`, with HF_HOME and its cache under `home`, no token, no
    progress bars, HF_HUB_OFFLINE on or off; gpt2np's weights folder is home/weights (returned).

    Set in the environment (for subprocesses) and in huggingface_hub.constants, which reads the
    environment once, at import, for this process.
    """
    from huggingface_hub import constants
    weights, hf_home = Path(home) / "weights", Path(home) / "hf-home"
    env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub"),
           "GPT2NP_WEIGHTS": str(weights), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    set_offline(monkeypatch, offline)
    return weights


def set_offline(monkeypatch, offline=True):
    """HF_HUB_OFFLINE=1 (or unset), in the environment and in huggingface_hub.constants."""
    from huggingface_hub import constants
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


def closed_port():
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalHub:
    """hub = LocalHub(); hub.add_repo("owner/name", directory); hub.url is the HF_ENDPOINT to use."""

    def __init__(self):
        self.repos = {}       # repo_id -> (commit hash, directory)
        self.faults = {}      # filename -> one of FAULTS, for every repo
        self.requests = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

            def log_message(self, *args):   # the request log is hub.requests
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def add_repo(self, repo_id, directory, commit=None):
        """Serve the files of `directory` as `repo_id`; returns the commit hash it answers with."""
        commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
        self.repos[repo_id] = (commit, Path(directory))
        return commit

    def fail(self, filename, fault):
        assert fault in FAULTS, fault
        self.faults[filename] = fault

    def file_requests(self):
        """The logged requests for files: (method, filename, status)."""
        return [(r.method, r.filename, r.status) for r in self.requests if r.repo_id]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # -- serving -------------------------------------------------------------------------------
    def _answer(self, handler, body):
        repo_id, revision, filename = self._parse(handler.path)
        commit, directory = self.repos.get(repo_id, (None, None))
        fault = self.faults.get(filename)
        path = directory / filename if directory else None
        if directory is None:
            status, headers = 404, {"X-Error-Code": "RepoNotFound"}
        elif revision not in (commit, "main"):
            status, headers = 404, {"X-Error-Code": "RevisionNotFound"}
        elif fault == "404" or not path.is_file():
            status, headers = 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}
        elif fault == "500":
            status, headers = 500, {"X-Repo-Commit": commit}
        else:
            status, headers = 200, {"X-Repo-Commit": commit}
        self.requests.append(Request(handler.command, repo_id, revision, filename, status, handler.path))
        if status != 200:
            message = f"{status} for {handler.path}".encode()
            self._send(handler, status, {**headers, "X-Error-Message": message.decode()},
                       message if body else b"", len(message))
            return
        data = path.read_bytes()
        lfs = filename.endswith(".safetensors")
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_sha1(data)
        headers["ETag"] = f'"{etag}"'
        if not body:
            self._send(handler, 200, headers, b"", len(data))
        elif fault in ("drop", "short"):
            self._send(handler, 200, headers, data[: len(data) // 2], len(data))
            if fault == "drop":   # a reset, not a clean close
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                              struct.pack("ii", 1, 0))
            handler.close_connection = True
        else:
            self._send(handler, 200, headers, data, len(data))

    @staticmethod
    def _send(handler, status, headers, payload, length):
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()

    @staticmethod
    def _parse(path):
        """/{owner}/{name}/resolve/{revision}/{filename} -> (repo_id, revision, filename)."""
        parts = [unquote(p) for p in path.split("?")[0].lstrip("/").split("/")]
        if len(parts) >= 5 and parts[2] == "resolve":
            return f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
        return None, None, None


def git_blob_sha1(data):
    """The id git gives a file's contents: what the Hub sends as the ETag of a non-LFS file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
