"""`python -m gpt2np download [NAME]`: a model's files fetched ahead of time (gpt2np/files/hub.py)."""

import argparse

from ..files.hub import KNOWN_MODELS, resolve
from .options import DEFAULT_MODEL


def build_parser():
    p = argparse.ArgumentParser(prog="gpt2np download",
                                description="Download a model's files ahead of time.")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL,
                   help=f"{', '.join(KNOWN_MODELS)} or a Hub repo id (default {DEFAULT_MODEL})")
    return p


def download_command(argv):
    args = build_parser().parse_args(argv)
    source = resolve(args.name)
    print(f"{args.name}: ready in {source.directory}")
    return 0
