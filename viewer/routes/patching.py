"""Activation patching in the viewer, a blueprint of its own (registered by `create_app`): the
"Where is it decided?" panel's one endpoint.

    POST /api/runs/<h>/patch {"corrupted", "answer", "versus", "sites", "head", "position"}
         -> a stream of JSON lines (application/x-ndjson):
            {"event": "start", "clean_tokens", "corrupted_tokens", "differ": [positions]}
            {"event": "progress", "done", "total"}           as the patched runs go (the latest
                                                              count; "total" null until the sweep
                                                              has begun; the last is total of total)
            {"event": "result", ...PatchResult.to_dict()}    last line, or
            {"event": "error", "error", "status"} / {"event": "cancelled", ...}

The run is the clean input (its ids, with its <|endoftext|> if it has one); "corrupted" is text
(or ids) with as many tokens. Every field is checked before anything runs: a bad one is a 400
with a JSON message, and a corrupted input of another token count is a 400 that carries both
tokenizations ("clean_tokens", "corrupted_tokens"). The numbers are
`gpt2np.analysis.patching.patch` on the same ids: this module only reads the request, takes the
model's slot (`api.model_slot`: a 503 when too many wait, three traces' bytes reserved) before the
response begins, runs the sweep in a worker thread and writes its progress; the slot is given back
when the sweep ends. Memory is bounded: the worker keeps one progress count, never a queue of lines.

Cancelling: the page aborts its request (its Cancel button). The sweep's `cancel` asks, before
every patched run, whether the client has closed its connection (`gate.client_gone`); a write
that fails closes this response's generator, which stops the sweep too.
"""

import json
import threading
from contextlib import ExitStack

from flask import Blueprint, current_app, request, stream_with_context

from gpt2np import GPT2npError
from gpt2np.analysis.examples import examples_for
from gpt2np.analysis.patching import ALL_SITES, SITES, PatchingCancelled, check_sites, patch
from gpt2np.heads import head_name

from ..answers.runs import finite, trace_bytes
from ..gate import client_gone
from . import args
from .api import get_run, model, model_slot
from .args import json_object, refuse_unknown_fields
from .errors import ApiError

bp = Blueprint("patching", __name__)

FIELDS = ("corrupted", "answer", "versus", "sites", "head", "position")
HEARTBEAT_S = 2.0            # a line at least this often, so a client that went away is noticed


def example():
    """A request body for the model in use, from its own example pair (gpt2np.analysis.examples)."""
    pair = examples_for(model())["pair"]
    body = ({"corrupted": pair["corrupted"], "answer": pair["answer"], "versus": pair["versus"]} if pair
            else {"corrupted": "the sentence with one word changed", "answer": " he", "versus": " she"})
    return json.dumps({**body, "sites": list(SITES)})


def corrupted_ids(m, value, bos):
    """"corrupted": text, or token ids -> checked ids (after <|endoftext|> when the run has it)."""
    if isinstance(value, str):
        if not value.strip():
            raise ApiError('"corrupted" is empty: type the sentence with a word changed, e.g. '
                           f"{example()}.")
        return [int(i) for i in m.prompt_ids(value, bos)]
    if isinstance(value, list) and value and all(type(i) is int for i in value):
        return [int(i) for i in m.prompt_ids(value, bos)]
    raise ApiError(f'Give "corrupted": the sentence with a word changed (text, or a list of token ids), '
                   f"e.g. {example()}.")


def sites_and_head(m, body):
    """"sites" (a list of names, or text "resid_pre z") and "head" ("L.H", for z_position) -> as
    `patching.check_sites` checks them (the library's one check: names, one head, z_position's
    head; a head with the default sites adds z_position). Absent sites: the default."""
    sites, head = body.get("sites"), body.get("head")
    if sites is None:
        sites = list(SITES)
    elif isinstance(sites, str):
        sites = [s for s in sites.replace(",", " ").split() if s]
    if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        raise ApiError(f'"sites" must be a list of site names, some of {", ".join(ALL_SITES)}.')
    if head == "":
        head = None
    if head is not None and not isinstance(head, str):
        raise ApiError('"head" must be text LAYER.HEAD, e.g. "1.2".')
    try:
        return check_sites(m, sites, head)
    except GPT2npError as e:
        raise ApiError(f'"{"head" if head is not None and "head" in str(e) else "sites"}": {e}') from None


def token_field(m, body, name):
    value = body.get(name)
    if value is None or value == "":
        raise ApiError(f'Give "{name}": one token, as text (with its leading space) or its id, e.g. {example()}.')
    try:
        return args.token_arg(m, value)
    except (ApiError, GPT2npError) as e:
        raise ApiError(f'"{name}": {e}') from None


def line(data):
    return (json.dumps(finite(data), allow_nan=False) + "\n").encode()


class Sweep:
    """One patching sweep in a worker thread: what the stream reads (the latest progress, the
    outcome) and the flag that stops it."""

    def __init__(self, m, ids, kwargs, log, gone):
        self.changed = threading.Condition()
        self.done, self.total, self.outcome = 0, None, None
        self.stop = threading.Event()
        self.cancel = lambda: self.stop.is_set() or gone()
        self.thread = threading.Thread(target=self.work, args=(m, ids, kwargs, log), daemon=True)

    def progress(self, done, total):
        with self.changed:
            self.done, self.total = done, total
            self.changed.notify_all()

    def work(self, m, ids, kwargs, log):
        try:
            if self.cancel():
                raise PatchingCancelled("cancelled before it began")
            result = patch(m, *ids, progress=self.progress, cancel=self.cancel, **kwargs)
            outcome = {"event": "result", **result.to_dict()}
        except PatchingCancelled as e:
            outcome = {"event": "cancelled", "message": str(e)}
        except GPT2npError as e:
            outcome = {"event": "error", "error": str(e), "status": 400}
        except Exception as e:                                   # reported on the stream, not raised
            log.exception("patching sweep failed")
            outcome = {"event": "error", "error": f"Internal error ({type(e).__name__}); the server log has "
                       "the details.", "status": 500}
        with self.changed:
            self.outcome = outcome
            self.changed.notify_all()

    def lines(self, first, slot):
        """The response body: `first`, then progress lines, then the outcome. Closed early (the
        client went away): the sweep is told to stop, and this waits until it has. Then the
        model's `slot` (an ExitStack holding it) is given back."""
        self.thread.start()
        try:
            yield line(first)
            sent = None
            while True:
                with self.changed:
                    self.changed.wait_for(lambda: self.outcome is not None or self.done != sent, HEARTBEAT_S)
                    done, total, outcome = self.done, self.total, self.outcome
                if outcome is None or (done != sent and total is not None):
                    sent = done
                    yield line({"event": "progress", "done": done, "total": total})
                if outcome is not None:
                    yield line(outcome)
                    return
        finally:
            self.stop.set()
            self.thread.join()
            slot.close()


@bp.post("/api/runs/<handle>/patch")
def api_patch(handle):
    body = json_object(example())
    run = get_run(handle)
    refuse_unknown_fields(body, FIELDS, f"{', '.join(FIELDS)}, e.g. {example()}")
    m = model()
    if "corrupted" not in body:
        raise ApiError(f'Give "corrupted", the sentence with a word changed: {example()}.')
    clean = [int(i) for i in run.ids]
    corrupted = corrupted_ids(m, body["corrupted"], run.bos)
    answer, versus = token_field(m, body, "answer"), token_field(m, body, "versus")
    if answer == versus:
        raise ApiError(f'"answer" and "versus" are the same token ({m.token_strings([answer])[0]!r}): a logit '
                       "difference needs two different tokens.")
    sites, head = sites_and_head(m, body)
    position = args.position(run, body=body, last_by_default=True)
    clean_tokens, corrupted_tokens = m.token_strings(clean), m.token_strings(corrupted)
    if len(clean) != len(corrupted):
        show = lambda tokens: " | ".join(repr(t) for t in tokens)  # noqa: E731
        raise ApiError(f"The corrupted sentence has {len(corrupted)} tokens and the clean one (the sentence "
                       f"above) {len(clean)}: patching copies activations position by position, so both "
                       f"need as many. Clean: {show(clean_tokens)}. Corrupted: {show(corrupted_tokens)}. "
                       "Change words for words of as many tokens.",
                       clean_tokens=clean_tokens, corrupted_tokens=corrupted_tokens)
    kwargs = {"sites": sites, "position": position, "head": head_name(*head) if head else None}
    first = {"event": "start", "handle": run.handle, "clean_tokens": clean_tokens,
             "corrupted_tokens": corrupted_tokens,
             "differ": [t for t, (a, b) in enumerate(zip(clean, corrupted)) if a != b]}
    environ = request.environ
    slot = ExitStack()          # the model's slot, held from here until the sweep ends (lines())
    slot.enter_context(model_slot(3 * trace_bytes(m.config, len(clean)), "Patching", run.handle))
    try:
        sweep = Sweep(m, (clean, corrupted, answer, versus), kwargs, current_app.logger,
                      gone=lambda: client_gone(environ))
        response = current_app.response_class(stream_with_context(sweep.lines(first, slot)),
                                              mimetype="application/x-ndjson")
    except BaseException:
        slot.close()
        raise
    response.call_on_close(slot.close)                    # a stream closed before it began
    # No "Cache-Control: no-store" (a POST is not cached anyway): with it Chromium reports a streamed
    # fetch read to its end as aborted now and then (microsoft/playwright#42742).
    response.headers["X-Accel-Buffering"] = "no"
    return response
