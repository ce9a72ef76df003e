"""Command line: `python -m gpt2np "sentence"` (run.py) and its subcommands, one module each:
`download` (download.py), `findings` (findings.py), `generate` (generate.py), `corpus` (corpus.py),
`export` (export.py) and `patch` (patch.py). What they share (the text or -, --model, --bos, --engine) is defined
once, in options.py.

Only argument parsing and printing live here; the work is done by `gpt2np.load`, `Model.run` and
`gpt2np.analysis`. Every user error prints one line on stderr and exits with status 2.
"""

import os
import sys

from ..errors import GPT2npError
from .corpus import corpus_command
from .download import download_command
from .export import export_command
from .findings import findings_command
from .generate import main as generate_command
from .patch import patch_command
from .run import run_command

SUBCOMMANDS = {"download": download_command, "findings": findings_command, "corpus": corpus_command,
               "export": export_command, "generate": generate_command, "patch": patch_command}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    command = SUBCOMMANDS.get(argv[0]) if argv else None
    try:
        return command(argv[1:]) if command else run_command(argv)
    except GPT2npError as e:
        print(f"gpt2np: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:      # the reader left early (`| head`): stop quietly, as `cat` does
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        except (OSError, ValueError):
            pass
        return 141               # 128 + SIGPIPE, what a shell reports for such a pipe
