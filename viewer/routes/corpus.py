"""The corpus page: a results file of `python -m gpt2np corpus` as tables, histograms and the
top examples of every head, each opening in the normal view at its position.

    GET /corpus        the page (templates/corpus.html + static/corpus.js, corpus.css)
    GET /api/corpus    the results file given by `--corpus FILE` (config CORPUS), without the
                       state kept for resuming; 404 when none was given (the page's load button
                       reads a file in the browser instead)
"""

from flask import Blueprint, current_app, jsonify, render_template

from gpt2np.analysis.corpus import read_stats

from ..answers.describe import model_summary
from .api import model
from .errors import ApiError

bp = Blueprint("corpus", __name__, template_folder="templates")


@bp.get("/corpus")
def page():
    return render_template("corpus.html", model=model_summary(model()),
                           has_corpus=bool(current_app.config.get("CORPUS")))


@bp.get("/api/corpus")
def stats():
    path = current_app.config.get("CORPUS")
    if not path:
        raise ApiError("No results file was given: start the viewer with `--corpus FILE`, or load "
                       "a file written by `python -m gpt2np corpus` with the page's button.", 404)
    data = read_stats(path)          # not a results file: GPT2npError, answered as a 400
    data.pop("state", None)
    return jsonify(data)
