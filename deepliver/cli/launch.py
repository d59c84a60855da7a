"""`deepliver launch RUN -- TRAIN_ARGS`: start training outside this process; `--status RUN`."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepliver.progress import Reporter


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "launch",
        help="start `deepliver train` in the background or on another machine; read its status",
        description="Start `deepliver train TRAIN_ARGS -o RUN` as a detached local process "
        "(RUN/launch.log holds its output, RUN/launch.exit its exit code), or through a remote "
        "command template: --remote 'ssh gpu1 {command}' or --remote 'sbatch --wrap {command}' "
        "({command}: the train command, {run}: RUN, {data}: the --data value, all shell-quoted; "
        "no credentials are stored: the template uses your own ssh keys or scheduler login). "
        "`deepliver launch RUN --status` reads the progress, the epochs so far and the result.",
    )
    parser.add_argument("run_folder", type=Path, metavar="RUN", help="the run folder")
    parser.add_argument("--status", action="store_true", help="show the run's status")
    parser.add_argument(
        "--wait", type=float, metavar="SECONDS", help="with --status: wait until it ends"
    )
    parser.add_argument("--remote", metavar="TEMPLATE", help="remote command template")
    parser.set_defaults(run=run, takes_passed_on=True)  # -- then the arguments of train


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from deepliver.errors import DeepLiverError
    from deepliver.training import launch

    if args.status:
        found = (
            launch.wait(args.run_folder, args.wait) if args.wait else launch.status(args.run_folder)
        )
        reporter.log(found.describe())
        reporter.result(state=found.state, epochs=len(found.epochs))
        return 1 if found.state == "failed" else 0
    train_args = args.passed_on
    if not train_args:
        raise DeepLiverError("nothing to launch: add -- and the arguments of deepliver train")
    if args.remote:
        record = launch.launch_remote(args.run_folder, train_args, args.remote)
        reporter.log(f"Submitted: {record['submitted']}")
    else:
        record = launch.launch_local(args.run_folder, train_args)
        reporter.log(f"Started process {record['pid']}: {record['command']}")
    reporter.log(f"Follow it with: deepliver launch {args.run_folder} --status")
    reporter.result(run=str(args.run_folder), where=record["where"])
    return 0
