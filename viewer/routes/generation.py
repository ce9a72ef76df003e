"""Generation in the viewer, a blueprint of its own (registered by `create_app`): the sampling
ledger of the next token, and Generate, which continues a run and runs the longer text.

    GET  /api/runs/<h>/sample?position&temperature&top_k&top_p&seed&greedy   the sampling ledger
    POST /api/runs/<h>/generate {"tokens", "temperature", "top_k", "top_p", "seed", "greedy"}
                                 -> the new run (as POST /api/run) and how each token was chosen

The ledger is `gpt2np.generate.choose` on the logits row at `position`: the top candidates with
logit, logit/T, p_temperature, top-k, running sum, top-p and p_draw (`generate.distribution`), and,
with a seed, the token that seed draws first (what Generate with that seed appends). A run keeps no
logits, only ln_final.hook_normalized, so the row is the model's own LM head on it
(`gpt2np.model.unembed`: ln_final[position] @ wteᵀ, one [d] @ [d, V] product, no forward pass).
Generate runs `Model.generate` from the run's ids, then makes the new run as POST /api/run does
(`api.run_input`): every generated position is an ordinary token of it.
"""

from flask import Blueprint, jsonify

from gpt2np.generate import SAMPLING_RANGES, decode

from ..answers.panels import SAMPLING_DEFAULTS, sample_answer
from . import args
from .api import get_run, model, model_slot, run_input, run_summary, stop_if_gone
from .args import ABSENT, flag_arg, json_object, real_number, refuse_unknown_fields, whole_number
from .errors import ApiError

bp = Blueprint("generation", __name__)

MAX_NEW_TOKENS = 64          # per Generate request
MAX_TEMPERATURE = 100.0
MAX_SEED = 2**63 - 1
FIELDS = ("tokens", "temperature", "top_k", "top_p", "seed", "greedy")
EXAMPLE = '{"tokens": 3, "temperature": 0.8, "top_k": 40, "top_p": 0.9, "seed": 0}'


def sampling_settings(body=None):
    """temperature, top_k, top_p, seed and greedy from the URL (body None) or a JSON body.
    Absent: answers.panels.SAMPLING_DEFAULTS (temperature 1, no top-k, no top-p, no seed, not greedy)."""
    r = SAMPLING_RANGES              # gpt2np's ranges, with the viewer's caps on temperature, top-k, seed
    d = SAMPLING_DEFAULTS
    temperature = real_number("temperature", r["temperature"].low, MAX_TEMPERATURE, "temperature", body,
                              default=d["temperature"], above_low=r["temperature"].above_low)
    top_k = whole_number("top_k", r["top_k"].low, model().config.vocab_size,
                         "top-k (how many of the most likely tokens to keep)", body, default=d["top_k"])
    top_p = real_number("top_p", r["top_p"].low, r["top_p"].high, "top-p (the probability mass to keep)",
                        body, default=d["top_p"], above_low=r["top_p"].above_low)
    seed = whole_number("seed", r["seed"].low, MAX_SEED, "seed", body, default=d["seed"])
    if body is None:
        greedy = flag_arg("greedy")
    else:
        greedy = body.get("greedy", d["greedy"])
        if not isinstance(greedy, bool):
            raise ApiError('"greedy": must be true or false.')
    return {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed, "greedy": greedy}


@bp.get("/api/runs/<handle>/sample")
def api_sample(handle):
    run = get_run(handle)
    position = args.position(run, last_by_default=True)
    return jsonify(sample_answer(model(), run, position, sampling_settings()))


def generation_bytes(config, n_tokens):
    """Generate's memory: the KV cache (k and v of every layer, float32) and a few logits rows."""
    return 4 * (2 * config.n_layer * n_tokens * config.n_embd + 4 * config.vocab_size)


@bp.post("/api/runs/<handle>/generate")
def api_generate(handle):
    get_run(handle)                                   # 404 before reading the body
    body = json_object(EXAMPLE)
    refuse_unknown_fields(body, FIELDS, f"{', '.join(FIELDS)}, e.g. {EXAMPLE}")
    tokens = whole_number("tokens", 1, MAX_NEW_TOKENS, "number of new tokens", body, default=ABSENT)
    s = sampling_settings(body)
    m = model()
    n = get_run(handle).n_tokens + tokens
    with model_slot(generation_bytes(m.config, n), "Generate", handle):
        run = get_run(handle)                         # looked up once the model is ours
        ids, bos = [int(i) for i in run.ids], run.bos
        del run
        g = m.generate(ids, max_new_tokens=tokens, temperature=s["temperature"], top_k=s["top_k"],
                       top_p=s["top_p"], seed=s["seed"], greedy=s["greedy"],
                       on_step=stop_if_gone)      # a client that left stops it at its next token
    ids = [int(i) for i in g.ids[int(bos):]]          # run_input puts <|endoftext|> back in front
    new_run, cached = run_input(ids, bos)
    return jsonify({**run_summary(new_run, cached), "text": decode(m, ids) if m.tokenizer else None,
                    "generation": {"n_prompt": g.n_prompt, "new_text": g.new_text, "stop": g.stop,
                                   "note": g.note, "settings": g.settings,
                                   "steps": [step.to_dict() for step in g.steps]}})
