"""Trace: every intermediate of one forward pass, as named read-only arrays.

A Trace is a read-only mapping from TransformerLens names (`blocks.3.attn.hook_pattern`) to NumPy
arrays, kept in forward order, together with the token ids and their display strings. It can be
saved to and loaded from a `.npz` file (no pickle: tokens are stored as JSON text), and shown as
the viewer's page: `to_html()`, and inline in a notebook (`_repr_html_`, see gpt2np/html.py).
A trace computed with a workspace (`model.run(text, workspace=ws)`) can be given back to it
(`ws.give_back(trace)`, see engine.Workspace); from then on it refuses to be read.
"""

import json
from collections.abc import Mapping

import numpy as np

from .errors import GPT2npError


def residual_stream_names(n_layer):
    """The residual stream at every depth: the embeddings (`blocks.0.hook_resid_pre`), then after
    each layer (`blocks.L.hook_resid_post`). -> n_layer + 1 names"""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{L}.hook_resid_post" for L in range(n_layer)]


GIVEN_BACK = ("This trace was given back to its workspace (ws.give_back): its arrays may now hold "
              "another pass's numbers, so it can no longer be read. Copy what you need "
              "(trace[name].copy()) before giving it back, or run the text again.")


class Trace(Mapping):
    """Named intermediates of one run. `trace[name]`, `trace.names()`, `trace.ids`, `trace.tokens`.
    lease: the workspace memory its arrays are in (engine.Lease, set by Model.run), if any."""

    def __init__(self, arrays, ids, tokens, model_name="", engine="", model=None, lease=None):
        self._named = dict(arrays)
        self._lease = lease
        self.given_back = False         # True once given back to its workspace: nothing can be read
        for array in self._named.values():
            array.flags.writeable = False
        self.ids = np.asarray(ids, dtype=np.int64)
        self.ids.flags.writeable = False
        self.tokens = list(tokens)
        self.model_name = model_name
        self.engine = engine            # which code computed it: "fast" or "reference" (api.ENGINES)
        self.model = model              # the Model that ran it (None once loaded from a file): its
        #                                 card and tokenizer for to_html's next-token strings

    @property
    def _arrays(self):
        if self.given_back:
            raise GPT2npError(GIVEN_BACK)
        return self._named

    def _given_back(self):
        """For Workspace.give_back: let go of every array; from now on every read refuses."""
        self._named, self._lease, self.given_back = {}, None, True

    # -- mapping ------------------------------------------------------------------------------
    def __getitem__(self, name):
        try:
            return self._arrays[name]
        except KeyError:
            raise KeyError(f"no trace entry {name!r}; trace.names() lists the "
                           f"{len(self._arrays)} names (e.g. 'blocks.0.attn.hook_pattern')") from None

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self):
        return len(self._arrays)

    def names(self):
        """Every name, in forward order."""
        return list(self._arrays)

    # -- conveniences -------------------------------------------------------------------------
    @property
    def logits(self):
        """[T, vocab] float32: next-token scores at every position."""
        return self._arrays["logits"]

    @property
    def n_tokens(self):
        return len(self.ids)

    @property
    def n_layer(self):
        return sum(1 for name in self._arrays if name.endswith(".attn.hook_pattern"))

    def check_position(self, position):
        """A position (negative: from the end) -> its index 0…T−1; out of range: GPT2npError."""
        T = self.n_tokens
        if not -T <= position < T:
            raise GPT2npError(f"Position {position} is out of range: the text has tokens 0–{T - 1}.")
        return position % T

    def result(self, layer, model=None):
        """blocks.{layer}.attn.hook_result [T, H, d]: what each head wrote into the residual stream,
        z_h · W_O^h (model.head_results; no c_proj bias: the sum over heads plus that bias is
        hook_attn_out). Computed on request from hook_z and the model's c_proj weight, not stored.
        model: needed for a trace loaded from a file (default: the model that ran it)."""
        model = model or self.model
        if model is None:
            raise GPT2npError("This trace was loaded from a file and does not know its model's weights: "
                              "pass the model, trace.result(layer, model).")
        from .model import head_results
        return head_results(self[f"blocks.{layer}.attn.hook_z"], model.params[f"h.{layer}.attn.c_proj.weight"])

    def pattern(self, layer, head=None):
        """blocks.{layer}.attn.hook_pattern [H, T, T], or one head's [T, T]."""
        p = self[f"blocks.{layer}.attn.hook_pattern"]
        return p if head is None else p[head]

    def nbytes(self):
        """Bytes held by the trace's arrays (an array stored under two names counts once)."""
        seen = {id(a): a.nbytes for a in self._arrays.values()}
        return sum(seen.values())

    def __repr__(self):
        if self.given_back:
            return f"<Trace {self.model_name or 'model'}: {self.n_tokens} tokens, given back to its workspace>"
        return (f"<Trace {self.model_name or 'model'} ({self.engine or 'engine?'}): {self.n_tokens} tokens, "
                f"{len(self)} arrays, {self.nbytes() / 1e6:.1f} MB>")

    # -- the viewer's page (gpt2np/html.py) ------------------------------------------------------
    def to_html(self, model=None, **options):
        """The viewer's page for this trace as one HTML string (see gpt2np.html.to_html)."""
        from .html import to_html
        return to_html(self, model, **options)

    def _repr_html_(self):
        """A notebook shows the trace as the viewer, in an iframe (None, so the text repr, when the
        trace does not know its model: one loaded from a file; or was given back)."""
        if self.model is None or self.given_back:
            return None
        from .html import notebook_view
        return notebook_view(self)._repr_html_()

    # -- files --------------------------------------------------------------------------------
    def save(self, path):
        """Write every array plus ids, tokens and model name to an uncompressed .npz file."""
        meta = json.dumps({"tokens": self.tokens, "model": self.model_name, "engine": self.engine,
                           "names": self.names()})
        np.savez(path, __ids__=self.ids, __meta__=np.array(meta), **self._arrays)

    @classmethod
    def load(cls, path):
        """Read a trace written by `save`."""
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["__meta__"]))
                arrays = {name: f[name] for name in meta["names"]}
                ids = f["__ids__"]
        except (OSError, KeyError, ValueError) as e:
            raise GPT2npError(f"{path}: not a gpt2np trace file ({e}).") from None
        return cls(arrays, ids, meta["tokens"], meta.get("model", ""), meta.get("engine", ""))
