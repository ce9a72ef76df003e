"""The gpt2np attention viewer: a local Flask app that runs gpt2np live and shows every head.

    create_app()                          # model from $GPT2NP_MODEL, else "demo"
    create_app({"MODEL": "path/to/dir"})  # a model name or directory
    python -m viewer --model demo         # or: flask --app viewer run

The model is loaded once, here in the factory, and the induction probe of the heads table runs
once for it. `api.py` holds the one blueprint (page, JSON API, static files) and `analysis.py`
adds the analysis panels' endpoints to it; `runs.py` the bounded cache of recent runs; `wire.py`
the compact formats sent to the browser; `ledger.py` the Q·K numbers read from the trace;
`errors.py` turns every error into JSON. The page itself is `templates/index.html` +
`static/*.js` (vanilla JS, no build, no CDN).
"""

import os

from flask import Flask

import gpt2np

from . import analysis  # noqa: F401 - adds the analysis endpoints to bp
from .api import bp
from .errors import register_error_handlers
from .runs import RunCache

DEFAULTS = {
    "MODEL": "demo",                       # name or directory, as for gpt2np.load
    "CACHE_BYTES": 512 * 1024 * 1024,      # memory bound of the cache of recent runs
    "MAX_CONTENT_LENGTH": 256 * 1024,      # request bodies larger than this get a 413
    "ALLOW_DOWNLOAD": False,               # never fetch weights from the page's server
}


def create_app(config=None):
    """Build the viewer app and load its model once.

    config: optional dict overriding DEFAULTS (MODEL, CACHE_BYTES, MAX_CONTENT_LENGTH, ...).
    With no MODEL given, $GPT2NP_MODEL is used, else "demo".
    """
    app = Flask(__name__, static_folder=None)
    app.config.update(DEFAULTS)
    if os.environ.get("GPT2NP_MODEL"):
        app.config["MODEL"] = os.environ["GPT2NP_MODEL"]
    app.config.update(config or {})
    app.json.sort_keys = False
    app.extensions["gpt2np.model"] = gpt2np.load(app.config["MODEL"],
                                                 allow_download=app.config["ALLOW_DOWNLOAD"])
    app.extensions["gpt2np.runs"] = RunCache(app.config["CACHE_BYTES"])
    app.extensions["gpt2np.induction"] = analysis.induction_probe(app.extensions["gpt2np.model"])
    app.register_blueprint(bp)
    register_error_handlers(app)
    return app
