"""Options several commands share, defined once."""

from __future__ import annotations

import argparse

from deepliver.datasets import DEFAULT_PHANTOM_SIZE


def add_phantom_size(parser: argparse.ArgumentParser) -> None:
    """``--size X Y Z`` of the phantoms that ``--data phantom:N`` makes."""
    parser.add_argument(
        "--size",
        type=int,
        nargs=3,
        default=DEFAULT_PHANTOM_SIZE,
        metavar=("X", "Y", "Z"),
        help="phantom size (default {} {} {})".format(*DEFAULT_PHANTOM_SIZE),
    )


def add_device(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--device auto|cpu|cuda``; ``inference.cascade.resolve_device`` turns it into one."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help=help)
