"""`load` a model by name or directory, then `model.run(text)` to get its full Trace.

This is the public face of gpt2np: it joins the pieces (hub -> config + weights + tokenizer ->
model.forward -> Trace) and checks inputs, so the forward pass itself only does math.
"""

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from . import engine as cpu_engine
from . import generate as generation
from . import model as reading_path
from .config import GPT2Config
from .errors import GPT2npError
from .files.hub import resolve
from .files.tokenizer import Tokenizer
from .files.weights import count_params, load_params
from .heads import check_head
from .trace import Trace

# Which code computes a run: "reference" is model.py's plain math, the code a learner reads and can
# step through; "fast" is the same forward pass with engine.py's CPU kernels. Tests hold them equal.
# Each module has `forward` (a run) and `forward_step` (one KV-cached generation step).
ENGINES = {"fast": cpu_engine, "reference": reading_path}
DEFAULT_ENGINE = "fast"


def check_engine(name):
    if name not in ENGINES:
        raise GPT2npError(f"Unknown engine {name!r}: choose {' or '.join(map(repr, ENGINES))}.")
    return name


@dataclass(frozen=True)
class ModelInfo:
    name: str
    origin: str
    n_params: int
    kind: str = "local"     # "demo", "official" (pinned, sha256-checked), "hub" or "local" (hub.ModelSource)

    def describe(self):
        """One line naming the model, where it came from and its size."""
        return f"{self.name} — {self.n_params / 1e6:.1f}M parameters — {self.origin}"


class Model:
    """A loaded GPT-2: `config`, `params` (checkpoint names), `tokenizer`, `info`, and `run`."""

    def __init__(self, config, params, tokenizer=None, info=None, engine=DEFAULT_ENGINE):
        self.config = config
        self.engine = check_engine(engine)   # the engine `run` uses unless told otherwise
        self.params = params
        self.tokenizer = tokenizer
        self.info = info or ModelInfo("model", "built in memory", count_params(params))

    def __repr__(self):
        return f"<gpt2np.Model {self.info.describe()}>"

    def encode(self, text, bos=False):
        """Text -> token ids (optionally with <|endoftext|> prepended), checked against the context."""
        if self.tokenizer is None:
            raise GPT2npError("This model has no tokenizer (no tokenizer.json or vocab.json + "
                              "merges.txt in its directory): pass token ids instead of text.")
        if not isinstance(text, str):
            raise GPT2npError(f"Expected text (str) or a list of token ids, got {type(text).__name__}.")
        if not text:
            raise GPT2npError("The text is empty: give at least one character.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise GPT2npError(f"The text is not valid Unicode: {e.reason} at character {e.start} "
                              "(invalid UTF-8 bytes or a lone surrogate). Fix the encoding of "
                              "the input.") from None
        ids = self.tokenizer.encode(text)
        if bos:
            ids = [self.bos_id(), *ids]
        return ids

    def bos_id(self):
        eot = self.tokenizer.endoftext_id if self.tokenizer else None
        return eot if eot is not None else self.config.vocab_size - 1

    def check_ids(self, ids):
        huge = [i for i in ids if isinstance(i, int) and not -2**63 <= i < 2**63]
        if huge:                                       # NumPy would make them dtype=object
            shown = huge[0] if huge[0].bit_length() <= 128 else f"of {huge[0].bit_length()} bits"
            raise GPT2npError(f"Token id {shown} is out of range: the vocabulary has "
                              f"{self.config.vocab_size} ids (0 to {self.config.vocab_size - 1}).")
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.size == 0:
            raise GPT2npError(f"Token ids must be a non-empty 1-D list, got shape {ids.shape}.")
        if not np.issubdtype(ids.dtype, np.integer):
            raise GPT2npError(f"Token ids must be integers, got {ids.dtype}.")
        n_ctx = self.config.n_positions
        if ids.size > n_ctx:
            raise GPT2npError(f"Too many tokens: {ids.size}, but {self.info.name} has a context "
                              f"of {n_ctx} tokens. Shorten the text.")
        bad = ids[(ids < 0) | (ids >= self.config.vocab_size)]
        if bad.size:
            raise GPT2npError(f"Token id {int(bad[0])} is out of range: the vocabulary has "
                              f"{self.config.vocab_size} ids (0 to {self.config.vocab_size - 1}).")
        return ids.astype(np.int64)

    def prompt_ids(self, text_or_ids, bos=False):
        """Text or token ids (optionally after <|endoftext|>) -> checked int64 ids [T]."""
        if isinstance(text_or_ids, str):
            ids = self.encode(text_or_ids, bos=bos)
        else:
            ids = list(text_or_ids)
            if bos:
                ids = [self.bos_id(), *ids]
        return self.check_ids(ids)

    def token_strings(self, ids):
        if self.tokenizer is None:
            return [f"<{int(i)}>" for i in ids]
        return self.tokenizer.token_strings(ids)

    def run(self, text_or_ids, bos=False, z_ablation=None, engine=None, workspace=None, kernels=None,
            edit=None):
        """Text or token ids -> Trace with every intermediate of the forward pass.

        bos: prepend <|endoftext|> (GPT-2 saw it between documents in training).
        z_ablation: {(layer, head): value} replacing those heads' hook_z (0.0 = zero-ablation; a
          [d_head] or [T, d_head] array to mean-ablate). A convenience: it becomes an `edit`.
        edit: a function edit(name, array) -> array called on every intermediate before the pass
          goes on with it (model.keep, model.replacing); the trace holds what the pass went on with.
        engine: "fast" (the CPU schedule of engine.py) or "reference" (model.py's plain math, to
          step through in a debugger); the same numbers either way. Default: the model's `engine`.
        workspace: a `gpt2np.Workspace` whose given-back arrays the pass writes into (the fast
          engine; the reference one allocates its own). Give the trace back with
          `workspace.give_back(trace)` once you are done with it. Without one, every array is
          new and nothing is kept after you drop the trace.
        kernels: the fast engine's kernels (default engine.CPU: one worker per core), e.g.
          `engine.CPUKernels(workers=1)` to compute on the calling thread alone.
        """
        engine = self.engine if engine is None else check_engine(engine)
        ids = self.prompt_ids(text_or_ids, bos)
        edit = reading_path.keep if edit is None else edit
        if z_ablation:
            edit = self.z_ablation_edit(z_ablation, then=edit)
        fast = {"kernels": kernels or cpu_engine.CPU} if engine == "fast" else {}   # model.py: neither
        with workspace.one_pass() if workspace is not None else nullcontext() as lease:
            if lease is not None and fast:
                fast["memory"] = lease                 # the reference engine allocates its own
            acts = ENGINES[engine].forward(self.params, self.config, ids, edit, **fast)
        return Trace(acts, ids, self.token_strings(ids), self.info.name, engine, model=self, lease=lease)

    def z_ablation_edit(self, z_ablation, then=reading_path.keep):
        """{(layer, head): value} -> the `edit` that puts value in those heads' hook_z (after `then`)."""
        changes = {}
        for (layer, head), value in z_ablation.items():
            check_head(self.config, layer, head)
            changes.setdefault(f"blocks.{layer}.attn.hook_z", []).append(((slice(None), head), value))
        replace = reading_path.replacing(changes)
        return lambda name, array: replace(name, then(name, array))

    def blocks_from(self, layer, resid_pre, edit=reading_path.keep, engine=None):
        """The blocks from `layer` on, on the residual stream entering it (model.blocks_from)
        -> {name: array} of their intermediates. engine: as for `run`."""
        engine = self.engine if engine is None else check_engine(engine)
        return ENGINES[engine].blocks_from(self.params, self.config, layer, resid_pre, edit)

    def token_id(self, token, hint=", e.g. ' big'"):
        """A token given as an id or as text that is exactly one token -> its id, checked.
        hint: the example the error message gives (analysis.examples gives the model's own)."""
        if isinstance(token, (int, np.integer)) and not isinstance(token, bool):
            return int(self.check_ids([int(token)])[0])          # out of the vocabulary: an error
        if not isinstance(token, str) or not token:
            raise GPT2npError(f"Give the token as text or as an id, got {token!r}.")
        if self.tokenizer is None:
            if token.isdigit():
                return self.token_id(int(token), hint)
            raise GPT2npError("This model has no tokenizer: give the token as an id.")
        ids = self.encode(token)
        if len(ids) != 1:
            pieces = ", ".join(repr(s) for s in self.token_strings(ids))
            raise GPT2npError(f"{token!r} is {len(ids)} tokens ({pieces}), not one. Give a single "
                              f"token (often with its leading space{hint}) or its id.")
        return ids[0]

    def forward_step(self, cache, token, engine=None):
        """One KV-cached generation step (see model.kv_cache) -> (the new token's every
        intermediate, the cache grown by its keys and values). engine: as for `run`."""
        engine = self.engine if engine is None else check_engine(engine)
        return ENGINES[engine].forward_step(self.params, self.config, cache, token)

    def generate(self, prompt, max_new_tokens=20, temperature=1.0, top_k=None, top_p=None, seed=None,
                 greedy=False, stop_at_eos=True, bos=False, on_step=None, engine=None):
        """Continue a prompt (text or token ids) one token at a time -> `Generation`: ids, tokens,
        text, a record of every step, and `trace()`. The sampling options are explained in
        gpt2np/generate.py; `greedy=True` takes the most likely token and ignores them.
        on_step: called with each step's record as soon as its token is chosen.
        engine: computes the prompt and the steps, as for `run` (default: the model's)."""
        engine = self.engine if engine is None else check_engine(engine)
        return generation.generate(self, prompt, max_new_tokens, temperature, top_k, top_p, seed,
                                   greedy, stop_at_eos, bos, on_step, engine)


def load(name_or_dir="demo", allow_download=True, engine=DEFAULT_ENGINE):
    """Load a GPT-2: a known name (gpt2, distilgpt2, gpt2-medium/large/xl, demo), a Hub repo
    id (owner/name) or a local directory with config.json, model.safetensors, tokenizer.json.
    engine: which code its runs use by default ("fast" or "reference", see ENGINES)."""
    check_engine(engine)
    source = resolve(name_or_dir, allow_download=allow_download)
    config = GPT2Config.from_file(source.directory / "config.json")
    params = load_params(source.directory, config)
    tokenizer = Tokenizer.from_dir(source.directory)
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise GPT2npError(
            f"{source.directory}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{config.vocab_size}; the tokenizer belongs to another model.")
    info = ModelInfo(source.name, source.origin, count_params(params), source.kind)
    return Model(config, params, tokenizer, info, engine)
