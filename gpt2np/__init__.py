"""gpt2np: GPT-2 written from scratch in NumPy, so that you can see attention.

    import gpt2np
    model = gpt2np.load("gpt2")          # or "demo", a Hub repo id, or a local directory
    trace = model.run("The quick brown fox")
    trace["blocks.3.attn.hook_pattern"]  # [n_head, T, T]
    gpt2np.save_html(trace, "view.html") # the viewer's page as one file; in a notebook: gpt2np.show(trace)

Start reading at gpt2np/model.py: the whole forward pass, attention included.
"""

from .api import Model, ModelInfo, load
from .config import GPT2Config
from .errors import GPT2npError
from .html import save_html, show
from .trace import Trace

__version__ = "0.1.0"
__all__ = ["load", "Model", "ModelInfo", "GPT2Config", "GPT2npError", "Trace", "save_html", "show", "__version__"]
