"""`deepliver train`: train a segmentation model and write its model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepliver.cli.options import add_device
from deepliver.models.card import ARCHITECTURES, STAGES
from deepliver.progress import Reporter


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a liver or tumor segmentation model (writes RUN/model/)",
        description="Train a segmentation model on generated phantoms (--data phantom:N; "
        "training seeds 1000+, validation seeds 100+, seeds 0-99 are never used). Phantoms are "
        "preprocessed once into RUN/cache/; RUN/log.jsonl gets one line per epoch, "
        "RUN/checkpoint.pt is written after every epoch (--resume continues from it), and "
        "RUN/model/ holds weights.pt and model.json at the end.",
    )
    parser.add_argument("--arch", choices=ARCHITECTURES, required=True)
    parser.add_argument(
        "--stage",
        choices=STAGES,
        required=True,
        help="liver, liver-fine (the liver's edge, in its box) or tumor (U-Nets), detection",
    )
    parser.add_argument("--data", required=True, help="phantom:N")
    parser.add_argument("-o", "--output", type=Path, required=True, help="run folder")
    parser.add_argument("--epochs", type=int, default=10, help="total epochs (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100, help="batches per epoch")
    parser.add_argument("--batch", type=int, help="patches per batch (default per arch)")
    parser.add_argument("--validation", type=int, default=4, help="validation phantoms")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--phantom-size",
        type=int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="fixed phantom size (default: varied per seed)",
    )
    parser.add_argument("--channels", type=int, nargs="+", help="U-Net channels per level")
    parser.add_argument("--patch", type=int, nargs=3, metavar=("X", "Y", "Z"))
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="mm per voxel of the grid the network sees (default per stage and arch)",
    )
    parser.add_argument(
        "--slices", type=int, help="adjacent axial slices a 2.5D model sees (odd; default 3)"
    )
    parser.add_argument("--name", help="model name (default STAGE-ARCH)")
    parser.add_argument(
        "--model-version", default="0.1.0", help="the model's version in its card (default 0.1.0)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from RUN's checkpoint")
    add_device(parser, "auto: a CUDA GPU when there is one (mixed precision), else the CPU")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from deepliver.training.loop import TrainConfig, train

    config = TrainConfig(
        arch=args.arch,
        stage=args.stage,
        data=args.data,
        output=args.output,
        epochs=args.epochs,
        seed=args.seed,
        steps=args.steps,
        batch=args.batch,
        validation=args.validation,
        lr=args.lr,
        phantom_size=tuple(args.phantom_size) if args.phantom_size else None,
        channels=tuple(args.channels) if args.channels else None,
        patch=tuple(args.patch) if args.patch else None,
        spacing=tuple(args.spacing) if args.spacing else None,
        slices=args.slices,
        name=args.name,
        version=args.model_version,
    )
    folder = train(config, reporter, resume=args.resume, device=args.device)
    if folder is None:  # another process of a torchrun job: process 0 reports
        return 0
    from deepliver.models.card import load_card

    card = load_card(folder)
    metric = card.validation_metric
    reporter.log(
        f"Model {card.name} written to {folder}: {metric.replace('_', ' ')} "
        f"{card.metrics[metric]:.4f} (epoch {card.metrics['best_epoch']})"
    )
    reporter.result(model=folder, **{metric: card.metrics[metric]})
    return 0
