"""The `paco` command: `paco train --preset NAME [...]`, `paco presets`, `paco evaluate RUN_DIR [...]`."""

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
  evaluate RUN_DIR [--episodes N] [--protocol paco|metaworld] [--checkpoint STEP]
                 score a saved agent on its run's suite; writes RUN_DIR/eval-<protocol>-<step>.json
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


def evaluate(args: list[str]) -> None:
    from paco.checkpoint import CheckpointError
    from paco.evaluation import PROTOCOLS, score_run, success_table

    parser = argparse.ArgumentParser(prog="paco evaluate", description="Score a saved agent on its run's suite.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--episodes", type=int, help="episodes per task (default: the run's train.eval_episodes)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="paco")
    parser.add_argument("--checkpoint", type=int, help="checkpoint step (default: the newest good one)")
    options = parser.parse_args(args)
    try:
        result, path = score_run(options.run_dir, options.episodes, options.protocol, options.checkpoint)
    except (CheckpointError, ValueError) as error:
        raise UsageError(str(error)) from error
    print(f"{options.protocol} protocol, checkpoint step {result['step']}, {result['episodes']} episodes per task")
    print(success_table(result["success"]))
    print(f"wrote {path}")


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
        elif command == "evaluate":
            evaluate(rest)
        else:
            raise UsageError(f"unknown command {command!r}; commands: train, presets, evaluate")
    except UsageError as error:
        print(f"paco: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
