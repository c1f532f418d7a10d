"""The `paco` command: `paco train --preset NAME [...]`, `paco presets`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tyro

from paco import presets
from paco.config import Config

USAGE = """usage: paco COMMAND [options]

commands:
  train --preset NAME [--seed S] [--out DIR] [--total-steps N] [--SECTION.FIELD VALUE ...]
                 train a preset; `paco train --preset NAME --help` lists every config field
  presets        list the presets, one line each
"""


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2."""


def parse_train_args(args: list[str]) -> Config:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="cpu-quick")
    known, rest = pre.parse_known_args(args)
    if known.preset not in presets.PRESETS:
        raise UsageError(f"unknown preset {known.preset!r}; `paco presets` lists them")
    default = presets.get(known.preset)
    return tyro.cli(Config, default=default, args=rest, prog=f"paco train --preset {known.preset}",
                    description=presets.PRESETS[known.preset][0])


def run_directory(config: Config) -> Path:
    return Path(config.out) if config.out else Path("runs") / (config.preset or "custom") / f"seed{config.seed}"


def list_presets() -> None:
    width = max(len(name) for name in presets.PRESETS)
    for name, (doc, _) in presets.PRESETS.items():
        print(f"{name:<{width}}  {doc}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "presets":
            list_presets()
        elif command == "train":
            from paco.trainer import train

            config = parse_train_args(rest)
            run_dir = run_directory(config)
            print(f"run directory: {run_dir}")
            train(config, run_dir)
        else:
            raise UsageError(f"unknown command {command!r}; commands: train, presets")
    except UsageError as error:
        print(f"paco: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
