"""The `paco` command: a dict of subcommands, each a small function that parses its own arguments.

Bad input is one line on stderr and exit code 2 (`UsageError`, or a ValueError from a subcommand's own parser);
a run stopped by too many stop-relaunches exits with 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Callable, NamedTuple

from paco import config as config_lib
from paco import presets
from paco.config import Config
from paco.run_config import differences, holds_run, parse_overrides, parse_seeds, preset_config


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """Runs to train in one process: one, or the seeds of one config (`--seeds`)."""

    configs: tuple[Config, ...]
    run_dirs: tuple[Path, ...]
    resume: bool


def run_directory(config: Config) -> Path:
    return Path(config.out) if config.out else Path("runs") / (config.preset or "custom") / f"seed{config.seed}"


def _resumed_config(run_dir: Path, preset: str | None, rest: list[str]) -> Config:
    """The config a run was started with; flags may only repeat it, or change how it is watched (progress
    bar, tracking)."""
    from paco import checkpoint

    try:
        saved = checkpoint.read_config(run_dir)
    except checkpoint.CheckpointError as error:
        raise UsageError(f"cannot resume: {error}") from None
    default = presets.get(preset) if preset else saved
    name = preset or saved.preset or "custom"
    description = presets.PRESETS[name].description if name in presets.PRESETS else ""
    args = rest if _gives_seed(rest) else [*rest, "--seed", str(saved.seed)]  # the seed is the run's, unless given
    config = parse_overrides(default, args, f"paco train --resume {run_dir}", description)
    different = differences(config, saved)
    if different:
        raise UsageError(f"cannot resume {run_dir}: its config differs from the one given ({'; '.join(different)})")
    watched = {k: getattr(config.train, k) for k in ("progress", "track", "wandb_project")}
    return config_lib.replace(saved, out=str(run_dir), train=watched)


def _gives_seed(args: list[str]) -> bool:
    return any(arg.split("=")[0] == "--seed" for arg in args)


def _seed_configs(config: Config, seeds: tuple[int, ...]) -> list[Config]:
    """One config per seed; with several, `out` (default runs/<preset>) is the parent of their seed<s> dirs."""
    if len(seeds) == 1 and not config.out:
        return [dataclasses.replace(config, seed=seeds[0])]
    parent = Path(config.out) if config.out else Path("runs") / (config.preset or "custom")
    return [dataclasses.replace(config, seed=s, out=str(parent / f"seed{s}")) for s in seeds]


def parse_train_args(args: list[str]) -> TrainRequest:
    """Configs and run directories of `paco train`; everything is checked before anything is written."""
    from paco import checkpoint

    pre = _Parser(add_help=False, allow_abbrev=False)
    pre.add_argument("--preset")
    pre.add_argument("--resume", type=Path, nargs="*")
    pre.add_argument("--seeds")
    pre.add_argument("--overwrite", action="store_true")
    known, rest = pre.parse_known_args(args)
    if known.preset is not None and known.preset not in presets.PRESETS:
        raise UsageError(f"unknown preset {known.preset!r}; `paco presets` lists them")
    seeds = parse_seeds(known.seeds) if known.seeds is not None else None
    if seeds is not None and _gives_seed(rest):
        raise UsageError("give --seed or --seeds, not both")
    resume = known.resume
    if resume == []:  # the run directories that --preset, --seed(s) and --out name
        resume = [run_directory(c) for c in _fresh_configs(known.preset, rest, seeds)]
    if resume is not None:
        configs = [_resumed_config(run_dir, known.preset, rest) for run_dir in resume]
        for config, run_dir in zip(configs, resume):
            config_lib.validate(config)
            try:
                checkpoint.newest_step(run_dir)
            except checkpoint.CheckpointError as error:
                raise UsageError(f"cannot resume: {error}") from None
        return TrainRequest(tuple(configs), tuple(run_directory(c) for c in configs), True)
    return _fresh_request(_fresh_configs(known.preset, rest, seeds), known.overwrite)


def _fresh_configs(preset: str | None, rest: list[str], seeds: tuple[int, ...] | None) -> list[Config]:
    config = preset_config(preset or "cpu-quick", rest)
    return [config] if seeds is None else _seed_configs(config, seeds)


def _fresh_request(configs: list[Config], overwrite: bool) -> TrainRequest:
    run_dirs = [run_directory(c) for c in configs]
    taken = [str(d) for d in run_dirs if holds_run(d)]
    if taken and not overwrite:
        raise UsageError(f"{', '.join(taken)} {'holds another run' if len(taken) == 1 else 'hold other runs'}; "
                         f"continue with --resume {' '.join(taken)} or replace with --overwrite")
    return TrainRequest(tuple(configs), tuple(run_dirs), False)


def _train(request: TrainRequest) -> int:
    from paco.checkpoint import CheckpointError
    from paco.trainer import RelaunchLimit, train_seeds

    for run_dir in request.run_dirs:
        print(f"{'resuming' if request.resume else 'run directory:'} {run_dir}")
    try:
        train_seeds(request.configs, request.run_dirs, request.resume)
    except CheckpointError as error:
        raise UsageError(f"cannot resume: {error}") from None
    except RelaunchLimit as error:
        print(f"paco: error: {error}", file=sys.stderr)
        return 1
    return 0


def train_command(args: list[str]) -> int:
    return _train(parse_train_args(args))


def transfer_command(args: list[str]) -> int:
    from paco.analysis.transfer import parse

    config, overwrite = parse(args)
    config_lib.validate(config)
    return _train(_fresh_request([config], overwrite))


def presets_command(args: list[str]) -> None:
    if args:
        raise UsageError(f"`paco presets` takes no arguments, got {' '.join(args)}")
    width = max(len(name) for name in presets.PRESETS)
    result_width = max(len(p.result) for p in presets.PRESETS.values())
    print(f"{'preset':<{width}}  {'reproduces':<{result_width}}  description")
    for name, preset in presets.PRESETS.items():
        print(f"{name:<{width}}  {preset.result or '-':<{result_width}}  {preset.description}")


def evaluate_command(args: list[str]) -> None:
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
    except CheckpointError as error:
        raise UsageError(str(error)) from error
    print(f"{options.protocol} protocol, checkpoint step {result['step']}, {result['episodes']} episodes per task")
    print(success_table(result["success"]))
    print(f"wrote {path}")


def _delegate(module: str) -> Callable[[list[str]], int | None]:
    """A subcommand whose `main(argv)` lives in `module`, imported only when it runs."""
    def run(args: list[str]) -> int | None:
        import importlib

        return importlib.import_module(module).main(args)

    return run


class Command(NamedTuple):
    run: Callable[[list[str]], int | None]
    synopsis: str
    purpose: str


COMMANDS: dict[str, Command] = {
    "train": Command(train_command, "train --preset NAME [--seed S | --seeds 0-9] [--out DIR] [--total-steps N] "
                     "[--overwrite] [--track wandb] [--SECTION.FIELD VALUE ...] | train --resume RUN_DIR...",
                     "train a preset (`paco train --preset NAME --help` lists every field), several seeds in one "
                     "process with --seeds; or continue runs from their newest good checkpoint"),
    "presets": Command(presets_command, "presets", "list the presets, with the table or figure each reproduces"),
    "sweep": Command(_delegate("paco.sweeps.sweep"), "sweep --presets A,B --seeds 0-9 --out DIR [--address ADDRESS] "
                     "[--cpus-per-run N] [--gpus-per-run G] [--max-retries R] [--SECTION.FIELD VALUE ...]",
                     "every (preset, seed) as a Ray task, here or on a cluster; run it again to resume"),
    "evaluate": Command(evaluate_command, "evaluate RUN_DIR [--episodes N] [--protocol paco|metaworld] "
                        "[--checkpoint STEP]",
                        "score a saved agent on its run's suite; writes RUN_DIR/eval-<protocol>-<step>.json"),
    "report": Command(_delegate("paco.analysis.report"), "report RUN_DIR_OR_GLOB... [--by FIELD] [--out DIR]",
                      "the multi-seed table: final success mean ± std, IQM with its 95% CI, best eval, per task"),
    "plot": Command(_delegate("paco.analysis.curves"), "plot RUN_DIR_OR_GLOB... [--by FIELD] [--out DIR]",
                    "learning curves over seeds, one line per group, and a per-task grid (PNG)"),
    "wspace": Command(_delegate("paco.analysis.wspace"), "wspace RUN_DIR [--out DIR] [--checkpoint STEP]",
                      "the learned w: 2-D PCA (Figure 4) and, for K = 2 unit-norm w, the unit circle (Figure 3a)"),
    "explore": Command(_delegate("paco.analysis.explore"), "explore RUN_DIR [--tasks A,B] [--points N] "
                       "[--episodes E] [--video gif|mp4|none] [--out DIR]",
                       "policies sampled from the learned subspace, rolled out and rendered (Figure 3b)"),
    "transfer": Command(transfer_command, "transfer RUN_DIR --task NAME [--from-scratch] [--seed S] "
                        "[--total-steps N] [--out DIR]",
                        "learn a new task's w on the run's frozen Φ (or, with --from-scratch, everything anew)"),
    "bench": Command(_delegate("paco.bench"), "bench [--json FILE] [--methods all|A,B] [--suite pointmass] "
                     "[--tasks T --batch-per-task B ...]",
                     "time one update of each method, acting and the training loop against this machine's peak"),
}

USAGE = "usage: paco COMMAND [options]\n\ncommands:\n" + "\n".join(
    f"  {c.synopsis}\n      {c.purpose}" for c in COMMANDS.values())


def main(argv: list[str] | None = None) -> int:
    from paco.runlock import RunDirectoryBusy

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command not in COMMANDS:
            raise UsageError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
        return COMMANDS[command].run(rest) or 0
    except (UsageError, ValueError, RunDirectoryBusy) as error:
        print(f"paco: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
