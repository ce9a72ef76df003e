"""The gpt2np attention viewer: a local Flask app that runs gpt2np live and shows every head.

    create_app()                          # model from $GPT2NP_MODEL, else "demo"
    create_app({"MODEL": "path/to/dir"})  # a model name or directory
    python -m viewer --model demo         # or: flask --app viewer run

The model is loaded once, here in the factory, and the induction probe of the heads table runs
once for it. The blueprints and the rest of Flask are imported inside the factory, so that
`import viewer` (and viewer.export, which gpt2np's `to_html` uses) loads no Flask.

    routes/    Flask: six blueprints, `api.py` (page, static files, the JSON API of runs and heads),
               `analysis.py` (the analysis panels' endpoints), `values.py` (the value ledger, the
               walk through a block, the logit attribution), `generation.py` (the sampling ledger
               and Generate), `patching.py` (activation patching, streamed) and `corpus.py` (the
               page of a `gpt2np corpus` results file, config CORPUS); `args.py` reads and checks
               request arguments, `errors.py` turns every error into JSON, `host.py` refuses
               foreign Host headers
    answers/   no Flask: what the API and the exported file both give (runs.py, describe.py,
               ledger.py, walk.py, wire.py)
    export/    no Flask: one run as one HTML file (choose, snapshot, bundle, page)
    gate.py    no Flask: admission to the model (one at a time, a bounded number waiting), whether
               a client has left, giving freed memory back to the system
    cli.py     `python -m viewer`
The page itself is `templates/index.html` + `static/*.js` (vanilla JS, no build, no CDN).
"""

import os

import gpt2np
from gpt2np.api import DEFAULT_ENGINE

LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")   # this machine, as a Host header names it


def default_cache_bytes():
    """A quarter of the machine's physical memory (os.sysconf), at least 512 MB; 2 GB if unknown.
    The bound covers the runs kept and the work under way (one forward pass, ablation, download)."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):          # not POSIX (Windows)
        return 2 * 1024**3
    return max(physical // 4, 512 * 1024**2)


DEFAULTS = {
    "MODEL": "demo",                       # name or directory, as for gpt2np.load
    "ENGINE": DEFAULT_ENGINE,              # "fast" or "reference" (model.py's plain math)
    "CACHE_BYTES": default_cache_bytes(),  # memory bound of recent runs + the work under way
    "MAX_WAITING": 8,                      # requests waiting for the model beyond one running: 503
    "MAX_CONTENT_LENGTH": 256 * 1024,      # request bodies larger than this get a 413
    "ALLOW_DOWNLOAD": False,               # never fetch weights from the page's server
    "ALLOWED_HOSTS": LOCAL_NAMES,          # Host header names served (any port); None: any name
    "CORPUS": None,                        # a results file of `gpt2np corpus`, shown at /corpus
}


def create_app(config=None):
    """Build the viewer app and load its model once.

    config: optional dict overriding DEFAULTS (MODEL, CACHE_BYTES, MAX_WAITING, MAX_CONTENT_LENGTH,
    ALLOWED_HOSTS, ...).
    With no MODEL given, $GPT2NP_MODEL is used, else "demo".
    """
    from flask import Flask

    from .answers.panels import induction_probe
    from .answers.runs import RunCache
    from .gate import ModelGate, map_large_blocks
    from .routes import analysis, api, corpus, generation, patching, values
    from .routes.errors import register_error_handlers
    from .routes.host import refuse_foreign_host

    app = Flask(__name__, static_folder=None)
    app.config.update(DEFAULTS)
    if os.environ.get("GPT2NP_MODEL"):
        app.config["MODEL"] = os.environ["GPT2NP_MODEL"]
    app.config.update(config or {})
    app.json.sort_keys = False
    app.extensions["gpt2np.model"] = gpt2np.load(app.config["MODEL"],
                                                 allow_download=app.config["ALLOW_DOWNLOAD"],
                                                 engine=app.config["ENGINE"])
    app.extensions["gpt2np.runs"] = RunCache(app.config["CACHE_BYTES"])
    app.extensions["gpt2np.gate"] = ModelGate(app.config["MAX_WAITING"])   # api.model_slot
    app.extensions["gpt2np.workspace"] = gpt2np.Workspace()        # api.workspace
    map_large_blocks()                     # freed arrays go back to the system (gate.py)
    app.extensions["gpt2np.induction"] = induction_probe(app.extensions["gpt2np.model"])
    app.before_request(refuse_foreign_host)
    app.register_blueprint(api.bp)
    app.register_blueprint(analysis.bp)
    app.register_blueprint(values.bp)
    app.register_blueprint(corpus.bp)
    app.register_blueprint(generation.bp)
    app.register_blueprint(patching.bp)
    register_error_handlers(app)
    return app
