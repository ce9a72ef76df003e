"""One run of the viewer as one HTML file that opens from disk, and as an iframe in a notebook.

    python -m gpt2np export "sentence" --html out.html          (gpt2np/cli/export.py)
    gpt2np.save_html(trace, "out.html"); trace.to_html(); gpt2np.show(trace, layer=5, head=1)

The file is the viewer's own page: templates/index.html, static/*.js bundled into one inline
module script (`bundle`), viewer.css inline, and a snapshot of the answers to the API calls the
page makes, keyed by their request path (`runs/<handle>/query?head=1&ignore_sink=0&layer=0&query=5`,
parameters sorted). Each answer is made by the function the API itself calls (answers/describe.py's
describe_run, next_tokens, pattern_bytes, overview_bytes; answers/ledger.py's query_panel, ledger,
pattern_row; answers/panels.py's panels), so every number has one home. static/snapshot.js answers
api.js's requests from the snapshot and says "not in this file" for the rest (heads left out), or,
for what needs the live server (ablation, the pair, findings, Generate, the panels at another
token), gives the note the page shows quietly, with the command (static/liveonly.js).

What goes in, in this order, each item whole or not at all, while the file stays within `max_mb`:
  1. always: the model and the run, the next-token top-5 at every position, the thumbnails of
     every head (the overview), and the opening head's heatmap;
  2. the opening head's exact numbers, if it is one of the `qk` heads; then the panels at the
     opening token, all or none (snapshot.panel_answers: heads table, logit lens, attribution,
     sampling ledger, walk, made by answers/panels.py as the API makes them);
  3. the heatmaps of the chosen heads (`layers` × `heads`, default every head), layer by layer;
  4. the exact numbers of the other `qk` heads that have their heatmap in, in order;
  5. the value ledgers of the `values` heads that have their heatmap in, in order.
Exact numbers are, for every query, its top-5 keys with and without position 0 (the Q·K panel:
q, k, q·k, score, p), the ledgers of those keys and the row's exact weights; a value ledger
(ledger.value_ledger), for every query, what the head moves: v, p·v, z and its write through
W_O. The default `qk` is the opening head's layer and the default `values` the opening head,
added only while the file stays within SMALL_MB (the opening head's exact numbers always, when
they fit): at 64 tokens of GPT-2 small a head's exact numbers are about 200 kB and its value
ledgers about 1 MB, so a whole layer of them (or q and k of every head, 4.7 MB of float32) would
not fit in a 2 MB file.
Heatmaps and thumbnails are base64 bytes (the wire format of wire.py). The JSON answers are
gzip-compressed, one pack per head plus one for the run, and inflated by the page with the
browser's DecompressionStream. A Content-Security-Policy in the page allows its own two inline
elements (by hash) and data:/blob: images, and nothing else: no request of any kind.

A new kind of API call goes into the snapshot with one entry in `answers_of_head` or
`values_of_head` (calls with a layer and a head) or `run_answers` (the rest): its key is the
request path the page asks for.
"""

from .bundle import bundle
from .choose import DEFAULT_MAX_MB, MB, SMALL_MB, ExportError
from .page import IFRAME_HEIGHT, NOTEBOOK_MAX_MB, iframe, page

# The parts: choose.py (which heads go in), snapshot.py (the answers), bundle.py (the scripts),
# page.py (the HTML). Importing this package imports no Flask (the answers come from viewer/answers).
__all__ = ["page", "iframe", "bundle", "ExportError", "MB", "DEFAULT_MAX_MB", "SMALL_MB", "NOTEBOOK_MAX_MB",
           "IFRAME_HEIGHT"]
