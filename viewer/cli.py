"""`python -m viewer`: parse the options, load the model once, print the URL, serve."""

import argparse
import json
import sys

from werkzeug.serving import WSGIRequestHandler

from gpt2np import GPT2npError
from gpt2np.analysis.corpus import read_stats
from gpt2np.api import ENGINES

from . import DEFAULTS, LOCAL_NAMES, create_app

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m viewer",
        description="The gpt2np attention viewer: type a sentence, see every head of the model.")
    parser.add_argument("--model",
                        help="model name (demo, gpt2, ...) or a local model directory (default: "
                             f"{DEFAULTS['MODEL']}, or with --corpus the model of its results)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default: 8765)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1, this machine only); any other "
                             "address serves other machines and answers any Host name")
    parser.add_argument("--debug", action="store_true",
                        help="Flask debug mode: reloader and debugger; never on a shared network")
    parser.add_argument("--engine", choices=list(ENGINES), default=DEFAULTS["ENGINE"],
                        help="'fast': the CPU schedule of gpt2np/engine.py; 'reference': gpt2np/model.py's "
                             f"plain math, to step through in a debugger (default: {DEFAULTS['ENGINE']})")
    parser.add_argument("--cache-mb", type=float, default=DEFAULTS["CACHE_BYTES"] / 2**20,
                        help="memory for recent runs and the work under way, in MB; a text whose run "
                             "alone needs more is refused with a 413 (default: a quarter of this "
                             f"machine's memory, {DEFAULTS['CACHE_BYTES'] // 2**20})")
    parser.add_argument("--max-waiting", type=int, default=DEFAULTS["MAX_WAITING"],
                        help="requests that may wait for the model while one runs; more get a 503 "
                             f"with Retry-After (default: {DEFAULTS['MAX_WAITING']})")
    parser.add_argument("--corpus", metavar="FILE",
                        help="a results file of `python -m gpt2np corpus`, shown at /corpus")
    return parser.parse_args(argv)


class JsonErrorRequestHandler(WSGIRequestHandler):
    """Errors the HTTP layer answers before Flask sees the request (a URL over 64 KB, too many or
    too long headers, a malformed request line) are JSON too, like every other error."""

    HINTS = {414: "Send long text in the body of POST /api/run, not in the URL.",
             431: "Send fewer and shorter headers.",
             400: "Send an HTTP/1.1 request."}

    def send_error(self, code, message=None, explain=None):
        reason = self.responses.get(code, ("Error", ""))[0]
        text = f"{reason}: {message}" if message and message != reason else reason
        body = json.dumps({"error": f"{text}. {self.HINTS.get(code, '')}".strip(),
                           "status": int(code)}).encode()
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, reason)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)


def main(argv=None, serve=True):
    """Returns the app (and does not serve) when serve=False, for tests."""
    args = parse_args(argv)
    if args.host not in LOCAL_HOSTS:
        print(f"warning: binding to {args.host}: other machines on the network can reach the "
              "viewer and make it run the model. Use --host 127.0.0.1 to keep it local.",
              file=sys.stderr)
    try:
        if args.corpus:
            stats = read_stats(args.corpus)
            args.model = args.model or stats["model"].get("spec")
        app = create_app({"MODEL": args.model or DEFAULTS["MODEL"], "CACHE_BYTES": int(args.cache_mb * 2**20),
                          "MAX_WAITING": args.max_waiting,
                          "ENGINE": args.engine, "CORPUS": args.corpus,
                          "ALLOWED_HOSTS": LOCAL_NAMES if args.host in LOCAL_HOSTS else None})
    except GPT2npError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    info = app.extensions["gpt2np.model"].info
    print(f"gpt2np viewer — {info.describe()} — engine: {args.engine}")
    print(f"open http://{host}:{args.port}/   (Ctrl+C to stop)", flush=True)
    if args.corpus:
        print(f"corpus results {args.corpus}: http://{host}:{args.port}/corpus", flush=True)
    if serve:
        app.run(host=args.host, port=args.port, debug=args.debug, use_reloader=args.debug,
                threaded=True, request_handler=JsonErrorRequestHandler)
    return app
