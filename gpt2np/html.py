"""The viewer anywhere: a trace as one HTML file that opens from disk, or inline in a notebook.

    trace = model.run("The trophy doesn't fit in the suitcase")
    gpt2np.save_html(trace, "trophy.html")       # one file: scripts, styles and data inside
    html = trace.to_html(layer=5, head=1)        # the same page as a string
    gpt2np.show(trace, layer=5, head=1)          # in a notebook: the page in an iframe
    trace                                        # (last line of a cell) the same, at head 0.0

The page is the viewer's own: viewer/export/ builds it from viewer/templates and viewer/static.
`page_builder` below is the one door from gpt2np up to the viewer (a test walks the imports and
allows no other): it imports viewer.export when first called, so `import gpt2np` needs neither
Flask nor the viewer, and viewer.export itself imports no Flask, so rendering a trace never loads
Flask either. IPython is used only when it is already running. Options, for all of them:

    layer, head, query   where the view opens (default 0, 0 and the last token)
    layers, heads        whose heatmaps go in: "0-3,7", [0, 5] or "all" (default every head)
    qk                   whose exact numbers go in (top-5 keys, Q·K panel, ledger): heads as
                         "5.1 5.5", "all" or "none" (default: the opening layer, within 2 MB)
    values               whose value ledgers go in: the same (default: the opening head, within 2 MB)
    max_mb               the file's size bound (default 50 for a file, 2.5 in a notebook)
    text, bos            the input as given (shown in the sentence box)
    model                the Model that ran the trace, when the trace does not carry it (loaded)
The page says what it holds; what it does not hold shows a "not in this file" note.
"""

import os

from .errors import GPT2npError


def page_builder():
    """The viewer's page builder, the module `viewer.export` (its `page`, `iframe` and size bounds),
    imported when first needed. The one place gpt2np imports the viewer; it imports no Flask."""
    import viewer.export
    return viewer.export


def to_html(trace, model=None, **options):
    """The page as an HTML string."""
    html, _ = page_builder().page(trace, model, **options)
    return html


def save_html(trace, path, model=None, **options):
    """Write the page to `path` (UTF-8). Returns what went in: {"path", "bytes", "heatmaps",
    "exact", "values", "holds"} (heads as "L.H")."""
    html, snapshot = page_builder().page(trace, model, **options)
    data = html.encode("utf-8")
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise GPT2npError(f"Cannot write {os.fspath(path)}: {e.strerror or e}. Give a writable "
                          "file path ending in .html.") from None
    holds = snapshot.data["holds"]
    return {"path": os.fspath(path), "bytes": len(data), "heatmaps": holds["heatmaps"],
            "exact": holds["exact"], "values": holds["values"], "holds": holds["text"]}


class NotebookView:
    """A page for a notebook: `_repr_html_` is an <iframe srcdoc> holding the whole page."""

    def __init__(self, trace, model=None, height=None, **options):
        export = page_builder()
        options.setdefault("max_mb", export.NOTEBOOK_MAX_MB)
        self.html, self.snapshot = export.page(trace, model, **options)
        name = trace.model_name or "model"
        view = self.snapshot.data["view"]
        self.model_name, self.n_tokens = name, trace.n_tokens
        self.opening = (view["layer"], view["head"], trace.n_tokens - 1 if view["q"] is None else view["q"])
        caption = (f"gpt2np viewer · {name} · {trace.n_tokens} tokens. No view below? This notebook's "
                   "outputs are not trusted here: run the cell again (or trust the notebook).")
        self._iframe = export.iframe(self.html, caption, height or export.IFRAME_HEIGHT)

    def __repr__(self):
        """What a notebook shows where HTML is not displayed (text/plain), and what print shows."""
        layer, head, query = self.opening
        n = self.n_tokens
        return (f"<gpt2np viewer page: {self.model_name}, {n} token{'s' * (n != 1)}, opening at head "
                f"{layer}.{head}, query {query}; {len(self.html.encode()) / 2**20:.1f} MB of HTML, shown "
                "as HTML in a notebook; .save('view.html') writes it to a file>")

    def _repr_html_(self):
        return self._iframe

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.html)


def notebook_view(trace, model=None, **options):
    return NotebookView(trace, model, **options)


def show(trace, model=None, height=None, **options):
    """Display the view in the running notebook (Jupyter, VS Code, Colab); returns None there.
    Outside a notebook there is nothing to display it in: a GPT2npError says to save_html."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        raise GPT2npError("gpt2np.show displays the view in a notebook, and none is running: save it "
                          "as a file instead, gpt2np.save_html(trace, 'view.html'), and open that.")
    display(NotebookView(trace, model, height, **options))
