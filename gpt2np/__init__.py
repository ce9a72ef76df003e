"""gpt2np: GPT-2 written from scratch in NumPy, so that you can see attention.

    import gpt2np
    model = gpt2np.load("gpt2")          # or "demo", a Hub repo id, or a local directory
    trace = model.run("The quick brown fox")
    trace["blocks.3.attn.hook_pattern"]  # [n_head, T, T]
    gpt2np.save_html(trace, "view.html") # the viewer's page as one file; in a notebook: gpt2np.show(trace)

    ws = gpt2np.Workspace()              # many passes: reuse their memory
    trace = model.run("Another text", workspace=ws)
    ws.give_back(trace)                  # the next run(..., workspace=ws) writes into its arrays

Start reading at gpt2np/model.py: the whole forward pass, attention included.
"""

from .api import Model, ModelInfo, load
from .config import GPT2Config
from .engine import Workspace
from .errors import GPT2npError
from .html import save_html, show
from .trace import Trace

__version__ = "0.1.0"
__all__ = ["load", "Model", "ModelInfo", "GPT2Config", "GPT2npError", "Trace", "Workspace", "save_html", "show",
           "__version__"]
