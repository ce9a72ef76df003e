"""Analysis tools (statistics, interventions, patching).

TEMPORARY on branch `patching` only: this re-export keeps `gpt2np.analysis.X` working after
analysis.py moved to analysis/stats.py, so that gpt2np/analysis/patching.py can be imported here.
The `house` branch does the real move; on merge, take its version of this file.
"""

from .stats import *  # noqa: F403
