"""``imagenet-pipe`` command line. Each subcommand is a thin door onto a library function."""

from __future__ import annotations

import argparse

from .. import __version__
from ..errors import ImagenetPipeError
from . import bench, convert, datasets, demo, fake, sync, verify
from . import eval as eval_command  # `imagenet-pipe eval` (the bare name `eval` is Python's builtin)
from .args import add_debug_flag, print_error

# every command, in the order `imagenet-pipe --help` lists them; each module adds its own parser and
# imports the library code it drives inside its handler, so building the parser imports no torch or DALI
COMMANDS = (convert, verify, sync, datasets, fake, demo, bench, eval_command)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imagenet-pipe", description=__doc__)
    p.add_argument("--version", action="version", version=f"imagenet-pipe {__version__}")
    add_debug_flag(p)
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        add_debug_flag(command.add_parser(sub.add_parser), subcommand=True)  # --debug after the subcommand too
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ImagenetPipeError as e:  # expected failures only: anything else is a bug and keeps its traceback
        print_error(args, e)
        return 2
