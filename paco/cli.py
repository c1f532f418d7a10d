"""The `paco` command: `paco train --preset NAME [...]`, `paco presets`, `paco evaluate RUN_DIR [...]`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import sys
from pathlib import Path

import tyro

from paco import config as config_lib
from paco import presets
from paco.config import Config

USAGE = """usage: paco COMMAND [options]

commands:
  train --preset NAME [--seed S] [--out DIR] [--total-steps N] [--overwrite] [--SECTION.FIELD VALUE ...]
                 train a preset; `paco train --preset NAME --help` lists every config field;
                 --overwrite replaces a run already in the output directory
  train --resume RUN_DIR
                 continue a run from its newest good checkpoint, with the config it was started with
  presets        list the presets, one line each
  evaluate RUN_DIR [--episodes N] [--protocol paco|metaworld] [--checkpoint STEP]
                 score a saved agent on its run's suite; writes RUN_DIR/eval-<protocol>-<step>.json
  bench [--json FILE] [--suite pointmass] [--tasks T --batch-per-task B --hidden H --components K ...]
                 time one update, acting and the training loop against this machine's peak matmul rate
"""


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _one_line(box: str) -> str:
    """The message inside tyro's error box, on one line (its help excerpt left out)."""
    lines = [line.strip().strip("│╭╮╰╯").strip() for line in box.strip().splitlines()[1:]]
    message = []
    for line in lines:
        if line and set(line) <= set("─ "):
            break
        message.append(line)
    return re.sub(r"\s+", " ", " ".join(message)).strip() or "invalid arguments"


def _tyro_cli(default: Config, args: list[str], prog: str, description: str) -> Config:
    """tyro.cli with its multi-line error box turned into one UsageError line."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            # The preset picks the method (the type of `network`); flags change that method's fields.
            return tyro.cli(Config, default=default, args=args, prog=prog, description=description,
                            config=(tyro.conf.AvoidSubcommands,))
    except SystemExit as exit:
        if exit.code:
            raise UsageError(_one_line(captured.getvalue())) from None
        sys.stderr.write(captured.getvalue())
        raise


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    config: Config
    run_dir: Path
    resume: bool


def _flat(config: Config) -> dict:
    flat = {}
    for name, value in config_lib.to_dict(config).items():
        flat.update({f"{name}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {name: value})
    return flat


def _differences(a: Config, b: Config) -> list[str]:
    """Settings that differ between two configs, as 'section.field: a != b' (output path and progress bar aside)."""
    fa, fb = _flat(a), _flat(b)
    return [f"{k}: {fa.get(k, '-')!r} != {fb.get(k, '-')!r}" for k in dict.fromkeys([*fa, *fb])
            if fa.get(k) != fb.get(k) and k not in ("out", "train.progress")]


def parse_train_args(args: list[str]) -> TrainRequest:
    """Config and run directory of `paco train`; everything is checked before anything is written."""
    from paco import checkpoint

    pre = _Parser(add_help=False, allow_abbrev=False)
    pre.add_argument("--preset")
    pre.add_argument("--resume", type=Path)
    pre.add_argument("--overwrite", action="store_true")
    known, rest = pre.parse_known_args(args)
    if known.preset is not None and known.preset not in presets.PRESETS:
        raise UsageError(f"unknown preset {known.preset!r}; `paco presets` lists them")
    if known.resume is not None:
        try:
            saved = checkpoint.read_config(known.resume)
        except checkpoint.CheckpointError as error:
            raise UsageError(f"cannot resume: {error}") from None
        default = presets.get(known.preset) if known.preset else saved
        name = known.preset or saved.preset or "custom"
        description = presets.PRESETS[name].description if name in presets.PRESETS else ""
        config = _tyro_cli(default, rest, f"paco train --resume {known.resume}", description)
        differences = _differences(config, saved)
        if differences:
            raise UsageError(f"cannot resume {known.resume}: its config differs from the one given "
                             f"({'; '.join(differences)})")
        config = dataclasses.replace(saved, out=str(known.resume))
    else:
        name = known.preset or "cpu-quick"
        config = _tyro_cli(presets.get(name), rest, f"paco train --preset {name}", presets.PRESETS[name].description)
    try:
        config_lib.validate(config)
    except ValueError as error:
        raise UsageError(str(error)) from None
    run_dir = run_directory(config)
    if known.resume is not None:
        try:
            checkpoint.newest_step(run_dir)
        except checkpoint.CheckpointError as error:
            raise UsageError(f"cannot resume: {error}") from None
    elif holds_run(run_dir) and not known.overwrite:
        raise UsageError(f"{run_dir} holds another run; continue it with --resume {run_dir} or replace it with "
                         f"--overwrite")
    return TrainRequest(config, run_dir, known.resume is not None)


def holds_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in ("config.json", "metrics.jsonl", "checkpoints"))


def run_directory(config: Config) -> Path:
    return Path(config.out) if config.out else Path("runs") / (config.preset or "custom") / f"seed{config.seed}"


def list_presets() -> None:
    width = max(len(name) for name in presets.PRESETS)
    result_width = max(len(p.result) for p in presets.PRESETS.values())
    print(f"{'preset':<{width}}  {'reproduces':<{result_width}}  description")
    for name, preset in presets.PRESETS.items():
        print(f"{name:<{width}}  {preset.result or '-':<{result_width}}  {preset.description}")


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
            from paco.checkpoint import CheckpointError
            from paco.trainer import RelaunchLimit, train

            request = parse_train_args(rest)
            print(f"{'resuming' if request.resume else 'run directory:'} {request.run_dir}")
            try:
                train(request.config, request.run_dir, request.resume)
            except CheckpointError as error:
                raise UsageError(f"cannot resume: {error}") from None
            except RelaunchLimit as error:
                print(f"paco: error: {error}", file=sys.stderr)
                return 1
        elif command == "evaluate":
            evaluate(rest)
        elif command == "bench":
            from paco.bench import main as bench

            try:
                bench(rest)
            except ValueError as error:
                raise UsageError(str(error)) from None
        else:
            raise UsageError(f"unknown command {command!r}; commands: train, presets, evaluate, bench")
    except UsageError as error:
        print(f"paco: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
