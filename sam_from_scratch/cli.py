"""`python -m sam_from_scratch <command>`: one entry point, each command implemented beside its subject.

    download     fetch an official checkpoint into the cache (download.py)
    segment      segment an image from points and/or a box (segment_cli.py)
    everything   run the automatic mask generator on an image (segment_cli.py)
    train-tiny   reproduce the bundled small model (training.py)
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, function that adds its arguments, function that runs it, one-line help)
COMMANDS = {
    "download": ("download", "add_arguments", "run", "download an official checkpoint (with checksum) into the cache"),
    "segment": ("segment_cli", "add_arguments_segment", "run_segment", "segment an image from points and/or a box"),
    "everything": ("segment_cli", "add_arguments_everything", "run_everything", "segment everything in an image"),
    "train-tiny": ("training.loop", "add_arguments", "run", "train the bundled small model from scratch"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sam_from_scratch", description="Segment Anything, from scratch.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, (module_name, add_name, run_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"sam_from_scratch.{module_name}")
        sub = subparsers.add_parser(command, help=help_text, description=help_text)
        getattr(module, add_name)(sub)
        sub.set_defaults(run=getattr(module, run_name))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
