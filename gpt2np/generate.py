"""Text generation: the loop over KV-cached steps, sampling (temperature, top-k, top-p, seed), and a
record of every step.

    g = model.generate("Once upon a time", max_new_tokens=20, temperature=0.8, top_k=40, seed=0)
    g.text, g.ids, g.tokens, g.steps[0].candidates, g.trace()

The prompt runs once through `Model.run`; its trace holds every layer's keys and values, the KV
cache (`model.kv_cache`). Each new token then takes one `Model.forward_step` (model.py's
`forward_step`, with the engine's kernels): q, k, v for that token alone, its query attending over
the cache. The logits it gives for the next
token are those of a full forward pass over the whole sequence (tests/core/test_generate.py holds them
equal). The sequence never grows past the model's context: there is no sliding window.

How a token is chosen from the logits [V] of the last position (in transformers' order:
temperature, then top-k, then top-p):
  greedy       the largest logit (on a tie, the lowest id); the options below do not apply.
  temperature  p = softmax(logits / temperature) over the whole vocabulary: below 1 sharpens the
               distribution, above 1 flattens it.
  top-k        keep the k most likely tokens (and any tied with the k-th).
  top-p        renormalise what is kept, walk it from the most likely token down adding up p (the
               running sum), and keep tokens while the sum before them is below top_p: the
               smallest set whose probabilities reach top_p.
  draw         renormalise the kept tokens' p and draw one with numpy.random.default_rng(seed).
Each step is recorded (`Step`): the N_CANDIDATES tokens with the largest logits, each with its
logit, p before and after temperature, whether it survives top-k and top-p, the running sum and the
probability it was drawn with; then the chosen token.
"""

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import GPT2npError
from .model import kv_cache

N_CANDIDATES = 10      # tokens recorded per step: the largest logits


@dataclass(frozen=True)
class Candidate:
    """One token's line in a step's table."""
    id: int
    token: str
    rank: int               # 1 for the largest logit
    logit: float
    p: float                # softmax(logits): the model's own probability
    p_temperature: float    # softmax(logits / temperature)
    top_k: bool             # survives top-k
    running_sum: float      # p after top-k, summed from the most likely token down to this one
    top_p: bool             # survives top-p
    p_draw: float           # the probability it was drawn with (0 if cut)


@dataclass(frozen=True)
class Step:
    """One new token: where it goes, the table it was chosen from, and the choice."""
    position: int
    candidates: list        # [Candidate], the N_CANDIDATES largest logits, most likely first
    chosen: Candidate       # may rank below the table when sampling
    n_kept: int             # tokens that survive top-k and top-p

    def to_dict(self):
        return asdict(self)


@dataclass
class Generation:
    """A prompt and its continuation. `ids`/`tokens` hold both (the prompt first, `n_prompt`
    tokens); `text` is all of it decoded, `new_text` the continuation; `steps` one record per new
    token; `stop` why it ended ("max_new_tokens", "eos" or "context") and `note` in a sentence."""
    ids: np.ndarray
    n_prompt: int
    tokens: list
    text: str
    new_text: str
    steps: list
    stop: str
    note: str
    settings: dict
    model: object = field(repr=False)

    @property
    def new_ids(self):
        return self.ids[self.n_prompt:]

    def trace(self, engine=None):
        """The Trace of prompt + continuation: `model.run(self.ids)`."""
        return self.model.run(self.ids, engine=engine)

    def to_dict(self):
        return {"ids": self.ids.tolist(), "n_prompt": self.n_prompt, "tokens": self.tokens,
                "text": self.text, "new_text": self.new_text, "stop": self.stop, "note": self.note,
                "settings": self.settings, "steps": [s.to_dict() for s in self.steps]}


# -- next-token probabilities and ranks: the one home of both, read by analysis/ and the viewer too --
def probabilities(logits):
    """Softmax in float64 over the vocabulary. [..., V] -> [..., V]"""
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def largest(values, k):
    """The indices of the k largest of values [V], largest first; ties: the lower index first.
    -> [min(k, V)] int64. Only the k-th largest and those above it are sorted."""
    values = np.asarray(values)
    k = min(k, len(values))
    if k < 1:
        return np.empty(0, dtype=np.int64)
    kth = np.partition(values, len(values) - k)[len(values) - k]               # the k-th largest
    tied = np.flatnonzero(values >= kth)                                       # k or more candidates
    return tied[np.lexsort((tied, -values[tied]))][:k]


def ranked_at_or_before(values, i):
    """[V] bool: index i and those ranked before it (a larger value, or equal and a lower index)."""
    return (values > values[i]) | ((values == values[i]) & (np.arange(len(values)) <= i))


def rank_of(values, i):
    """1-based rank of index i in values [V], ranked as `largest` ranks them (1 = the largest)."""
    return int(ranked_at_or_before(values, i).sum())


def distribution(logits, temperature=1.0, top_k=None, top_p=None):
    """The sampling distribution over the whole vocabulary, and every quantity on the way.

    logits [V] -> dict of [V] arrays (float64, or bool for "survives"): logits, p, p_temperature,
    top_k, after_k (p_temperature renormalised over the top-k survivors: what top-p reads), top_p,
    p_draw (what is drawn from; sums to 1). Tokens rank by logit, ties by the lower id.
    """
    logits = np.asarray(logits, dtype=np.float64)
    V = len(logits)
    p_temperature = probabilities(logits / temperature)
    kept_k = np.ones(V, dtype=bool)
    if top_k is not None and top_k < V:                   # the k-th largest logit or above
        kept_k = logits >= np.partition(logits, V - top_k)[V - top_k]
    after_k = np.where(kept_k, p_temperature, 0.0) / p_temperature[kept_k].sum()
    kept_p = kept_k
    if top_p is not None and top_p < 1:
        # Only these need sorting: a token with less than (1 - top_p) / V has more than top_p of
        # the mass before it (the tokens after it hold less than V times its own), so it is cut.
        may_stay = np.flatnonzero(after_k >= (1 - top_p) / V)
        order = may_stay[np.argsort(-logits[may_stay], kind="stable")]      # most likely first
        mass_before = np.cumsum(after_k[order]) - after_k[order]
        kept_p = np.zeros(V, dtype=bool)
        kept_p[order[mass_before < top_p]] = True         # until the running sum reaches top_p
    p_draw = np.where(kept_p, p_temperature, 0.0) / p_temperature[kept_p].sum()
    return {"logits": logits, "p": probabilities(logits), "p_temperature": p_temperature, "top_k": kept_k,
            "after_k": after_k, "top_p": kept_p, "p_draw": p_draw}


def choose(logits, rng, position, token_strings, temperature=1.0, top_k=None, top_p=None,
           greedy=False):
    """Pick the next token from logits [V] -> Step. Greedy takes the largest logit (its table is
    that of top_k=1 at temperature 1); otherwise one draw from `distribution`'s p_draw."""
    d = distribution(logits, 1.0, 1) if greedy else distribution(logits, temperature, top_k, top_p)
    logits = d["logits"]
    chosen = int(np.argmax(logits)) if greedy else int(rng.choice(len(logits), p=d["p_draw"]))
    shown = largest(logits, N_CANDIDATES).tolist()                   # largest first, ties: lower id
    strings = dict(zip(shown + [chosen], token_strings(shown + [chosen])))

    def candidate(i):
        ahead = ranked_at_or_before(logits, i)
        return Candidate(i, strings[i], int(ahead.sum()), float(logits[i]), float(d["p"][i]),
                         float(d["p_temperature"][i]), bool(d["top_k"][i]), float(d["after_k"][ahead].sum()),
                         bool(d["top_p"][i]), float(d["p_draw"][i]))
    return Step(position, [candidate(i) for i in shown], candidate(chosen), int(d["top_p"].sum()))


@dataclass(frozen=True)
class Range:
    """The values a sampling setting takes: low..high (above low, with `above_low`), finite; a
    whole number with `whole`."""
    low: float
    high: float = math.inf
    above_low: bool = False
    whole: bool = False

    def holds(self, x):
        kinds = (int, np.integer) if self.whole else (int, float, np.number)
        if isinstance(x, bool) or not isinstance(x, kinds):
            return False
        if not self.whole and not finite(x):
            return False
        return bool((self.low < x if self.above_low else self.low <= x) and x <= self.high)

    def text(self):
        """In words: "a number above 0", "a whole number of at least 1", "a number in (0, 1]"."""
        noun = "a whole number" if self.whole else "a number"
        if self.high < math.inf:
            return f"{noun} in {'(' if self.above_low else '['}{self.low:g}, {self.high:g}]"
        return f"{noun} {'above' if self.above_low else 'of at least'} {self.low:g}"


def finite(x):
    """Not inf or nan, and for an int, small enough to be a float."""
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


# The sampling settings' ranges: the one home for them (the command line and the viewer read them).
SAMPLING_RANGES = {
    "temperature": Range(0, above_low=True),
    "top_k": Range(1, whole=True),
    "top_p": Range(0, 1, above_low=True),
    "seed": Range(0, whole=True),
}
# What an absent (None) setting means, and why a range is what it is.
SAMPLING_ABSENT = {"top_k": "no limit", "top_p": "no limit", "seed": "a fresh one"}
TOP_P_MEANS = "the share of probability mass the kept tokens must reach."
GREEDY_HINT = ("A temperature of 0 means always the most likely token: that is greedy decoding "
               "(greedy=True; on the command line --greedy).")


def check_sampling(settings, spelled=str, none="None", greedy_hint=GREEDY_HINT):
    """Refuse a sampling setting outside its range (SAMPLING_RANGES) with a GPT2npError.

    settings: {name: value} of the settings given. spelled(name) is the name in the caller's words
    ("--top-k"); `none` how the caller leaves a setting out (None: the message does not say).
    """
    for name, value in settings.items():
        r = SAMPLING_RANGES[name]
        if r.holds(value):
            continue
        absent = f" (or {none} for {SAMPLING_ABSENT[name]})" if none and name in SAMPLING_ABSENT else ""
        why = {"temperature": f". {greedy_hint}", "top_p": f": {TOP_P_MEANS}"}.get(name, ".")
        raise GPT2npError(f"{spelled(name)} must be {r.text()}{absent}, got {value!r}{why}")


def check_settings(max_new_tokens, temperature, top_k, top_p, seed, greedy):
    if not Range(1, whole=True).holds(max_new_tokens):
        raise GPT2npError(f"max_new_tokens must be a whole number of at least 1, got {max_new_tokens!r}.")
    if not greedy:
        given = {"top_k": top_k, "top_p": top_p, "seed": seed}
        check_sampling({"temperature": temperature, **{k: v for k, v in given.items() if v is not None}})


def checked_prompt(model, prompt, bos=False):
    """Text or ids -> checked ids [T] that leave the context room for at least one new token."""
    ids = model.prompt_ids(prompt, bos)
    if len(ids) >= model.config.n_positions:
        raise GPT2npError(f"The prompt has {len(ids)} tokens and fills the context of "
                          f"{model.info.name} ({model.config.n_positions} tokens): no position is "
                          "left for a new token. Shorten the prompt.")
    return ids


def generate(model, prompt, max_new_tokens=20, temperature=1.0, top_k=None, top_p=None, seed=None,
             greedy=False, stop_at_eos=True, bos=False, on_step=None, engine=None):
    """Continue `prompt` (text, or token ids for a model without tokenizer) -> Generation.

    Stops after max_new_tokens, at <|endoftext|> (stop_at_eos; the token is kept) or when the
    sequence fills the model's context. seed: for numpy.random.default_rng; None draws one, which
    `settings["seed"]` reports so that the run can be repeated. on_step(step) is called as each
    token is chosen. engine: computes the prompt and the steps (default: the model's).
    """
    check_settings(max_new_tokens, temperature, top_k, top_p, seed, greedy)
    ids = checked_prompt(model, prompt, bos)
    n_prompt, n_ctx = len(ids), model.config.n_positions
    if seed is None and not greedy:
        seed = fresh_seed()
    rng = np.random.default_rng(seed)
    eos = model.bos_id()                       # GPT-2's <|endoftext|> both starts and ends a text

    prompt_trace = model.run(ids, engine=engine)   # holds every layer's k and v
    cache = kv_cache(prompt_trace, model.config)
    logits = prompt_trace.logits[-1]           # [V] for the token after the prompt
    ids, steps = ids.tolist(), []
    while True:
        step = choose(logits, rng, len(ids), model.token_strings, temperature, top_k, top_p, greedy)
        ids.append(step.chosen.id)
        steps.append(step)
        if on_step:
            on_step(step)
        if stop_at_eos and step.chosen.id == eos:
            stop, note = "eos", f"Stopped at <|endoftext|> (id {eos}), the end of a text."
            break
        if len(steps) == max_new_tokens:
            stop, note = "max_new_tokens", f"Stopped after {max_new_tokens} new tokens, as asked."
            break
        if len(ids) == n_ctx:
            stop, note = "context", (
                f"Stopped after {len(steps)} new tokens: the sequence fills the context of "
                f"{model.info.name} ({n_ctx} tokens), which has no position embedding beyond it. "
                "gpt2np does not slide a window; shorten the prompt for a longer continuation.")
            break
        acts, cache = model.forward_step(cache, step.chosen.id, engine)
        logits = acts["logits"][-1]

    ids = np.asarray(ids, dtype=np.int64)
    settings = {"max_new_tokens": max_new_tokens, "greedy": greedy, "stop_at_eos": stop_at_eos,
                "engine": engine or model.engine,
                **({} if greedy else {"temperature": temperature, "top_k": top_k, "top_p": top_p,
                                      "seed": seed})}
    return Generation(ids, n_prompt, model.token_strings(ids), decode(model, ids),
                      decode(model, ids[n_prompt:]), steps, stop, note, settings, model)


def fresh_seed():
    """A new seed from the operating system's entropy, small enough to type back."""
    return int(np.random.default_rng().integers(2**31))


def decode(model, ids):
    """ids -> text (the tokenizer's decoding; without one, the token strings joined)."""
    if model.tokenizer is None:
        return "".join(model.token_strings(ids))
    return model.tokenizer.decode(ids)
