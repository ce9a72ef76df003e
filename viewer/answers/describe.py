"""What the page is told of the model and of a run, and the binary answers (one head's heatmap, every
head's thumbnails) with their headers: the same answers for the JSON API (viewer/routes/api.py)
and the exported file (viewer/export/). No Flask here."""

from gpt2np.analysis.examples import examples_for

from .ledger import token_ref
from .wire import ENCODING, THUMB_ENCODING, f32, lower_triangle_bytes

ENGINE_ABOUT = {"fast": "the CPU schedule of gpt2np/engine.py: the forward pass of model.py with faster kernels",
                "reference": "gpt2np/model.py's plain math itself: set a breakpoint there to see these numbers"}


def model_summary(m, engine=None):
    """The model `m` as the page's header and GET /api/model describe it (the app's model, or a saved
    file's: export/), with the engine that computed its runs (default: its own)."""
    engine = m.engine if engine is None else engine
    cfg = m.config
    return {"name": m.info.name, "origin": m.info.origin, "n_params": m.info.n_params,
            "describe": m.info.describe(), "kind": m.info.kind, "engine": engine,
            "engine_about": ENGINE_ABOUT[engine],
            "has_tokenizer": m.tokenizer is not None,
            "n_layer": cfg.n_layer, "n_head": cfg.n_head, "d_head": cfg.d_head, "n_embd": cfg.n_embd,
            "n_positions": cfg.n_positions, "vocab_size": cfg.vocab_size,
            "examples": examples_for(m)}


def describe_run(run, m, engine):
    """What the page is told of a run: tokens, ids, shapes, the next-token top-5 at the last
    position. run_summary adds the cache's state; a saved file (export.py) says it is one."""
    cfg = m.config
    T, last = run.n_tokens, run.n_tokens - 1
    return {"handle": run.handle, "model": m.info.name, "n_tokens": T,
            "tokens": run.tokens, "ids": [int(i) for i in run.ids], "bos": run.bos,
            "n_layer": cfg.n_layer, "n_head": cfg.n_head, "d_head": cfg.d_head,
            "shapes": {"hook_pattern": [cfg.n_head, T, T], "hook_attn_scores": [cfg.n_head, T, T],
                       "hook_q": [T, cfg.n_head, cfg.d_head], "hook_k": [T, cfg.n_head, cfg.d_head],
                       "logits": [T, cfg.vocab_size]},
            "next_token": next_tokens(run, last, m), "elapsed_ms": round(run.elapsed * 1000, 1),
            "engine": engine, "encoding": ENCODING}


def next_tokens(run, position, m):
    """The next-token top-5 at `position`, with the token strings of the model `m`."""
    ids = run.next_ids[position]
    strings = m.token_strings(ids)
    return {**token_ref(run, position),
            "top": [{"id": int(i), "token": s, "p": f32(p)}
                    for i, s, p in zip(ids, strings, run.next_probs[position])]}


def wire_headers(**headers):
    """The headers that describe a binary answer: X-Gpt2np-Tokens, X-Gpt2np-Encoding, ..."""
    return {"X-Gpt2np-" + name.replace("_", "-").title(): str(value) for name, value in headers.items()}


def pattern_bytes(run, layer, head):
    """One head's heatmap: (bytes, headers) as GET .../pattern sends them."""
    return lower_triangle_bytes(run.patterns[layer][head]), wire_headers(
        tokens=run.n_tokens, encoding=ENCODING, layer=layer, head=head)


def overview_bytes(run):
    """Every head's thumbnail: (bytes, headers) as GET .../overview sends them."""
    data, size = run.overview()
    return data, wire_headers(tokens=run.n_tokens, encoding=THUMB_ENCODING, size=size,
                              layers=len(run.patterns), heads=run.patterns[0].shape[0])
