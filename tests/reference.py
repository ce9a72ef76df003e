"""Run Hugging Face transformers on a model directory: the reference the parity tests compare to."""

import numpy as np


def hf_model(directory):
    """GPT2LMHeadModel from the same files gpt2np reads, float32, eager attention (so that it
    returns attention weights)."""
    import torch
    from transformers import GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained(str(directory), attn_implementation="eager",
                                            dtype=torch.float32)
    return model.eval()


def hf_run(model, ids):
    """-> dict with logits [T, V], hidden_states (n_layer + 1) × [T, d], attentions n_layer × [H, T, T]."""
    import torch
    with torch.no_grad():
        out = model(torch.tensor([list(ids)]), output_attentions=True, output_hidden_states=True)
    return {"logits": out.logits[0].numpy(),
            "hidden_states": [h[0].numpy() for h in out.hidden_states],
            "attentions": [a[0].numpy() for a in out.attentions]}


def paired_tensors(trace, ref):
    """(gpt2np name, gpt2np array, transformers array) for every tensor both sides produce."""
    n_layer = trace.n_layer
    pairs = []
    for i in range(n_layer):
        pairs.append((f"blocks.{i}.hook_resid_pre", trace[f"blocks.{i}.hook_resid_pre"],
                      ref["hidden_states"][i]))
    pairs.append(("ln_final.hook_normalized", trace["ln_final.hook_normalized"], ref["hidden_states"][-1]))
    for i in range(n_layer):
        pairs.append((f"blocks.{i}.attn.hook_pattern", trace[f"blocks.{i}.attn.hook_pattern"],
                      ref["attentions"][i]))
    pairs.append(("logits", trace.logits, ref["logits"]))
    return pairs


def max_abs_delta(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
