"""`deepliver <command>`: one module per command, each with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import os
import sys

from deepliver import __version__
from deepliver.cli import (
    compare,
    convert,
    demo,
    evaluate,
    export,
    info,
    launch,
    models,
    phantom,
    segment,
    slices,
    store,
    train,
)
from deepliver.errors import DeepLiverError
from deepliver.progress import MODES, open_reporter

COMMANDS = (
    info,
    convert,
    phantom,
    segment,
    evaluate,
    compare,
    slices,
    demo,
    store,
    export,
    train,
    launch,
    models,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepliver",
        description="Liver and liver tumor CT tools (the DeepLiver core, without Slicer).",
    )
    parser.add_argument("--version", action="version", version=f"deepliver {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    for command_parser in subparsers.choices.values():
        command_parser.add_argument(
            "--progress",
            choices=MODES,
            default="bar",
            help="bar: a progress bar on a terminal (default); jsonl: JSON lines on stdout "
            "for a program (progress, log, result, error); none: the text only",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passed_on: list[str] = []  # after "--": another command's arguments (deepliver launch)
    if "--" in argv:
        cut = argv.index("--")
        argv, passed_on = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    if passed_on and not getattr(args, "takes_passed_on", False):
        parser.error(f"deepliver {args.command} takes nothing after --")
    args.passed_on = passed_on
    with open_reporter(args.progress) as reporter:
        try:
            return args.run(args, reporter) or 0
        except KeyboardInterrupt:
            reporter.error("interrupted")
            print("deepliver: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # Whoever read our output stopped early (`deepliver info DIR | head`): stop quietly.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except DeepLiverError as error:
            reporter.error(str(error))
            if args.debug:
                raise
            print(f"deepliver: error: {error}", file=sys.stderr)
            return 1
        except Exception as error:  # noqa: BLE001 - one line for the user, traceback with --debug
            message = f"unexpected error: {type(error).__name__}: {error}"
            reporter.error(message)
            if args.debug:
                raise
            print(f"deepliver: {message} (run with --debug for the traceback)", file=sys.stderr)
            return 2
