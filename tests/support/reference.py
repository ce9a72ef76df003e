"""The reference the parity tests compare to: Hugging Face transformers, read from its own modules.

`hf_trace` runs `GPT2LMHeadModel` once with forward hooks and pre-hooks on its submodules and returns
every tensor under the name gpt2np gives it (TransformerLens names, no batch axis):

    wte / wpe output            -> hook_embed, hook_pos_embed
    block input                 -> blocks.i.hook_resid_pre
    ln_1 input, float64 formula -> blocks.i.ln1.hook_scale                    [T, 1] √(var + ε)
    ln_1 output                 -> blocks.i.ln1.hook_normalized
    attn.c_attn output, split   -> blocks.i.attn.hook_q / hook_k / hook_v       [T, H, dh]
    q, k (float64) + causal mask-> blocks.i.attn.hook_attn_scores              [H, T, T]
    attentions (eager)          -> blocks.i.attn.hook_pattern                  [H, T, T]
    attn.c_proj input           -> blocks.i.attn.hook_z                        [T, H, dh]
    attn.c_proj output          -> blocks.i.hook_attn_out
    ln_2 input / output         -> blocks.i.hook_resid_mid, blocks.i.ln2.hook_normalized
                                   (ln2.hook_scale from the input, as for ln_1)
    mlp.c_fc / mlp.act output   -> blocks.i.mlp.hook_pre, blocks.i.mlp.hook_post
    mlp.c_proj output           -> blocks.i.hook_mlp_out
    block output                -> blocks.i.hook_resid_post
    ln_f output, lm_head output -> ln_final.hook_normalized, logits (ln_final.hook_scale from its input)

`compare` measures every name of a gpt2np Trace against it, relative to the reference's magnitude
at each position, and checks that masked scores are exactly -inf.
"""

import re

import numpy as np


def hf_model(directory):
    """GPT2LMHeadModel from the same files gpt2np reads, float32, eager attention (so that it
    returns attention weights)."""
    import torch
    from transformers import GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained(str(directory), attn_implementation="eager",
                                            dtype=torch.float32)
    return model.eval()


def hf_trace(model, ids):
    """Every intermediate gpt2np names, taken from transformers' modules. -> {name: float32 array}"""
    import torch
    H = model.config.n_head
    got, handles = {}, []

    def take_output(name):
        def hook(module, args, output):
            got[name] = output[0] if isinstance(output, tuple) else output
        return hook

    def take_input(name):
        def hook(module, args, kwargs):
            got[name] = args[0] if args else kwargs["hidden_states"]
        return hook

    def on_output(module, name):
        handles.append(module.register_forward_hook(take_output(name)))

    def on_input(module, name):
        handles.append(module.register_forward_pre_hook(take_input(name), with_kwargs=True))

    t = model.transformer
    on_output(t.wte, "hook_embed")
    on_output(t.wpe, "hook_pos_embed")
    for i, block in enumerate(t.h):
        b = f"blocks.{i}."
        on_input(block, b + "hook_resid_pre")
        on_input(block.ln_1, b + "ln1.input")
        on_output(block.ln_1, b + "ln1.hook_normalized")
        on_output(block.attn.c_attn, b + "c_attn")
        on_input(block.attn.c_proj, b + "attn.hook_z")
        on_output(block.attn.c_proj, b + "hook_attn_out")
        on_input(block.ln_2, b + "hook_resid_mid")
        on_output(block.ln_2, b + "ln2.hook_normalized")
        on_output(block.mlp.c_fc, b + "mlp.hook_pre")
        on_output(block.mlp.act, b + "mlp.hook_post")
        on_output(block.mlp.c_proj, b + "hook_mlp_out")
        on_output(block, b + "hook_resid_post")
    on_input(t.ln_f, "ln_final.input")
    on_output(t.ln_f, "ln_final.hook_normalized")
    try:
        with torch.no_grad():
            out = model(torch.tensor([list(ids)]), output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()

    ref = {name: value.detach().numpy().reshape(value.shape[-2:]) for name, value in got.items()}
    T = len(ids)
    for i, attentions in enumerate(out.attentions):
        b = f"blocks.{i}."
        q, k, v = np.split(ref.pop(b + "c_attn"), 3, axis=-1)           # [T, 3d] -> 3 × [T, d]
        ref[b + "attn.hook_q"], ref[b + "attn.hook_k"], ref[b + "attn.hook_v"] = (
            a.reshape(T, H, -1) for a in (q, k, v))
        ref[b + "attn.hook_z"] = ref[b + "attn.hook_z"].reshape(T, H, -1)
        ref[b + "attn.hook_pattern"] = attentions[0].numpy()
        ref[b + "attn.hook_attn_scores"] = scores_float64(ref[b + "attn.hook_q"], ref[b + "attn.hook_k"])
    ref["logits"] = out.logits[0].numpy()
    eps = model.config.layer_norm_epsilon
    for i in range(len(t.h)):
        b = f"blocks.{i}."
        ref[b + "ln1.hook_scale"] = ln_scale_float64(ref.pop(b + "ln1.input"), eps)
        ref[b + "ln2.hook_scale"] = ln_scale_float64(ref[b + "hook_resid_mid"], eps)
    ref["ln_final.hook_scale"] = ln_scale_float64(ref.pop("ln_final.input"), eps)
    return ref


def ln_scale_float64(x, eps):
    """LayerNorm's divisor √(var + ε) of each row (biased variance), in float64 from the input
    transformers' LayerNorm received. x [T, d] -> [T, 1]"""
    x = x.astype(np.float64)
    return np.sqrt(x.var(axis=-1, keepdims=True) + eps)


def scores_float64(q, k):
    """q·k / √d_head in float64, -inf where a key comes after its query. q, k [T, H, dh] -> [H, T, T]"""
    q, k = q.astype(np.float64), k.astype(np.float64)
    scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(q.shape[-1])
    T = q.shape[0]
    scores[:, np.triu(np.ones((T, T), dtype=bool), k=1)] = -np.inf
    return scores


# Per-name bounds for the random test models: max over positions of max|Δ| / max|ref| at that
# position. Patterns are probabilities (≤ 1): their bound is absolute.
RANDOM_BOUNDS = {"default": 1e-5, "pattern": 1e-5}

# The official checkpoint (tests/data/gpt2/README.md, "Tolerances on the real weights"): the residual stream and
# ln_final relative to each position's magnitude ≤ 1e-5, patterns ≤ 1e-4 absolute. The other
# intermediates and the raw logits have no measured figure on the real file here: 1e-4 relative,
# ten times the random models' bound (test_real_weights also checks log-softmax ≤ 1e-3).
REAL_BOUNDS = {"default": 1e-4, "pattern": 1e-4,
               **{name: 1e-5 for name in ("blocks.*.hook_resid_pre", "blocks.*.hook_resid_mid",
                                          "blocks.*.hook_resid_post", "ln_final.hook_normalized")}}


def kind_of(name):
    """'blocks.3.attn.hook_q' -> 'blocks.*.attn.hook_q': the name without its layer."""
    return re.sub(r"^blocks\.\d+\.", "blocks.*.", name)


def position_axis(name):
    """[H, T, T] arrays have their query position on axis 1; every other trace array on axis 0."""
    return 1 if name.endswith(("hook_attn_scores", "hook_pattern")) else 0


def relative_delta(ours, ref, axis=0):
    """max over positions t of  max|ours_t - ref_t| / max|ref_t|  (finite entries; float64)."""
    ours, ref = (np.moveaxis(np.asarray(a, dtype=np.float64), axis, 0) for a in (ours, ref))
    finite = np.isfinite(ref)
    diff = np.where(finite, np.abs(ours - np.where(finite, ref, 0.0)), 0.0)
    scale = np.where(finite, np.abs(ref), 0.0)
    T = ref.shape[0]
    per_position = diff.reshape(T, -1).max(1) / np.maximum(scale.reshape(T, -1).max(1), 1e-30)
    return float(per_position.max())


def tensor_relative_delta(ours, ref):
    """max|ours - ref| / max|ref| over the whole tensor (finite entries; float64)."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    finite = np.isfinite(ref)
    return float(np.abs(ours[finite] - ref[finite]).max() / max(np.abs(ref[finite]).max(), 1e-30))


def max_abs_delta(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def compare(trace, ref, bounds=RANDOM_BOUNDS):
    """-> [(name, measured, bound)] for every name of the trace; `measured` is the relative Δ
    (absolute for patterns). Raises AssertionError naming the tensor and layer on a mismatch of
    names, shapes or masked scores."""
    assert set(trace.names()) == set(ref), (
        f"names only in gpt2np: {sorted(set(trace.names()) - set(ref))}; "
        f"only in the reference: {sorted(set(ref) - set(trace.names()))}")
    rows = []
    for name in trace.names():
        ours, theirs = trace[name], ref[name]
        assert ours.shape == theirs.shape, f"{name}: shape {ours.shape}, reference {theirs.shape}"
        if name.endswith("hook_attn_scores"):
            masked = np.isneginf(theirs)
            assert np.all(np.isneginf(ours[masked])), f"{name}: a masked score is not exactly -inf"
            assert np.all(np.isfinite(ours[~masked])), f"{name}: an unmasked score is not finite"
        if name.endswith("hook_pattern"):
            rows.append((name, max_abs_delta(ours, theirs), bounds["pattern"]))
        else:
            rows.append((name, relative_delta(ours, theirs, position_axis(name)),
                         bounds.get(kind_of(name), bounds["default"])))
    return rows


def check(model, hf, ids, record, bounds=RANDOM_BOUNDS, label="", engine=None):
    """Run both on ids, compare every name, record the figures; fail naming every tensor out of
    bounds. -> the gpt2np Trace"""
    trace = model.run(ids) if engine is None else model.run(ids, engine=engine)
    failures = []
    for name, measured, bound in compare(trace, hf_trace(hf, ids), bounds):
        record(name, measured, bound, f"{label}T={len(ids)}")
        if not measured <= bound:
            failures.append(f"{name} (T={len(ids)}): {measured:.3e} > {bound:.0e}")
    assert not failures, "\n".join(failures)
    return trace


# -- activation patching in transformers, with forward hooks ----------------------------------------
PATCH_ATTENTION = "gpt2np_patched_pattern"     # an attention function registered with transformers


def hf_patched_logits(model, ids, site, layer, index, clean):
    """transformers' logits [T, V] for `ids` with one activation patched from `clean` (hf_trace of
    the clean input), by hooks on its own modules — the independent twin of gpt2np.analysis.patching:

        resid_pre  [t]        pre-hook on block `layer`: its input hidden_states at position t
        resid_post [t]        hook on block `layer`: its output at t
        attn_out   [t]        hook on attn.c_proj: its output at t (resid_dropout is off in eval)
        mlp_out    [t]        hook on the mlp: its output at t
        z          [h]        pre-hook on attn.c_proj: its input columns h·dh … (h+1)·dh − 1, every position
        z_position [(t, h)]   the same at position t only
        pattern    [h]        eager attention with head h's weights replaced by the clean pattern,
                              then multiplied by the values again (a registered attention function)
    """
    import torch
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface
    from transformers.models.gpt2.modeling_gpt2 import eager_attention_forward
    block = model.transformer.h[layer]
    dh = model.config.n_embd // model.config.n_head
    value = lambda name: torch.from_numpy(np.ascontiguousarray(clean[f"blocks.{layer}.{name}"]))  # noqa: E731
    handles = []

    def put(tensor, where, new):
        tensor = tensor.clone()
        tensor[where] = new
        return tensor

    if site == "resid_pre":
        def pre(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            hidden = put(hidden, (0, index), value("hook_resid_pre")[index])
            return ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})
        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
    elif site in ("resid_post", "attn_out", "mlp_out"):
        module, name = {"resid_post": (block, "hook_resid_post"), "attn_out": (block.attn.c_proj, "hook_attn_out"),
                        "mlp_out": (block.mlp, "hook_mlp_out")}[site]

        def post(module, args, output):
            if isinstance(output, tuple):
                return (put(output[0], (0, index), value(name)[index]), *output[1:])
            return put(output, (0, index), value(name)[index])
        handles.append(module.register_forward_hook(post))
    elif site in ("z", "z_position"):
        t, h = (slice(None), index) if site == "z" else index
        z = value("attn.hook_z")[t, h]

        def pre_proj(module, args):
            return (put(args[0], (0, t, slice(h * dh, (h + 1) * dh)), z),)
        handles.append(block.attn.c_proj.register_forward_pre_hook(pre_proj))
    elif site == "pattern":
        pattern = value("attn.hook_pattern")[index]

        def attention(module, query, key, val, mask, **kwargs):
            out, weights = eager_attention_forward(module, query, key, val, mask, **kwargs)
            if module.layer_idx == layer:
                weights = put(weights, (0, index), pattern)
                out = torch.matmul(weights, val).transpose(1, 2)
            return out, weights
        AttentionInterface.register(PATCH_ATTENTION, attention)
        AttentionMaskInterface.register(PATCH_ATTENTION, AttentionMaskInterface._global_mapping["eager"])
        model.set_attn_implementation(PATCH_ATTENTION)
    else:
        raise ValueError(site)
    try:
        with torch.no_grad():
            return model(torch.tensor([list(ids)])).logits[0].numpy()
    finally:
        for handle in handles:
            handle.remove()
        if site == "pattern":
            model.set_attn_implementation("eager")
