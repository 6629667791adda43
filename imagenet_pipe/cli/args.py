"""What every command shares: argument types, the ``--debug`` flag and the one way an expected
error is printed."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable

# what each command module's add_parser is given: the subparsers' add_parser, called with the
# command's name and its ArgumentParser options
NewParser = Callable[..., argparse.ArgumentParser]

DEBUG_ENV = "IMAGENET_PIPE_DEBUG"  # set to 1 to see the traceback of an expected failure too
DEBUG_HELP = f"on an error, print the traceback too (or set {DEBUG_ENV}=1)"


def csv_list(text: str) -> list[str]:
    """argparse type: ``a, b,c`` -> ``["a", "b", "c"]``."""
    return [t.strip() for t in text.split(",") if t.strip()]


def ints(text: str) -> list[int]:
    """argparse type: ``224,384`` -> ``[224, 384]``."""
    return [int(t) for t in csv_list(text)]


def floats(text: str) -> list[float]:
    """argparse type: ``0.5,1`` -> ``[0.5, 1.0]``."""
    return [float(t) for t in csv_list(text)]


def floats3(text: str) -> tuple[float, float, float]:
    """argparse type: one value for all three channels, or three comma-separated values."""
    values = [float(v) for v in text.split(",")]
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise argparse.ArgumentTypeError("give one value or three comma-separated values")
    return tuple(values)  # type: ignore[return-value]


def split_sizes(text: str) -> int | dict[str, int]:
    """argparse type: ``1252`` or ``train=1252,validation=782``."""
    if "=" not in text:
        return int(text)
    return {k.strip(): int(v) for k, v in (part.split("=", 1) for part in text.split(","))}


def add_debug_flag(parser: argparse.ArgumentParser, *, subcommand: bool = False) -> None:
    """``--debug`` before the subcommand (``subcommand=False``) or after it; a subcommand's flag
    does not reset what was given before it."""
    extra = {"default": argparse.SUPPRESS} if subcommand else {}
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP, **extra)


def print_error(args: argparse.Namespace, error: BaseException) -> None:
    """An expected failure: one line on stderr naming the command, with the traceback before it
    when ``--debug`` (or ``IMAGENET_PIPE_DEBUG``) asks for it."""
    if args.debug or os.environ.get(DEBUG_ENV, "0") not in ("", "0"):
        traceback.print_exception(error)
    print(f"imagenet-pipe {args.command}: error: {one_line(str(error))}", file=sys.stderr)


def one_line(message: str) -> str:
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())
