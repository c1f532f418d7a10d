"""A run's config from a preset and command-line overrides, and what tells two runs' settings apart.

`paco train` and `paco sweep` both build on these, so that a sweep's run is exactly the run that `paco train
--preset P --seed S ... --out DIR` would make, and both refuse a directory that holds a run of other settings.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import tyro

from paco import config as config_lib
from paco import presets
from paco.config import Config

IGNORED_DIFFERENCES = ("out", "train.progress", "train.track", "train.wandb_project", "train.env_workers")
"""Fields that may differ between two configs of the same run: where it is written, how it is watched, and where
its envs step (which changes no number)."""
SEED_LEVEL_SETTINGS = ("seed", *IGNORED_DIFFERENCES)
"""What may differ between the seeds of one experiment (and between seeds trained in one process)."""
_SEEDS = re.compile(r"^(\d+)(?:-(\d+))?$")


def _one_line(box: str) -> str:
    """The message inside tyro's error box, on one line (its help excerpt left out)."""
    lines = [line.strip().strip("│╭╮╰╯").strip() for line in box.strip().splitlines()[1:]]
    message = []
    for line in lines:
        if line and set(line) <= set("─ "):
            break
        message.append(line)
    return re.sub(r"\s+", " ", " ".join(message)).strip() or "invalid arguments"


def parse_overrides(default: Config, args: Sequence[str], prog: str, description: str = "") -> Config:
    """`default` with the `--SECTION.FIELD VALUE` flags of `args` applied; a bad flag is a one-line ValueError."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            # The preset picks the method (the type of `network`); flags change that method's fields.
            return tyro.cli(Config, default=default, args=list(args), prog=prog, description=description,
                            config=(tyro.conf.AvoidSubcommands,))
    except SystemExit as exit:
        if exit.code:
            raise ValueError(_one_line(captured.getvalue())) from None
        sys.stderr.write(captured.getvalue())  # --help
        raise


def preset_config(preset: str, args: Sequence[str] = ()) -> Config:
    """The validated config that `paco train --preset PRESET ARGS...` trains."""
    if preset not in presets.PRESETS:
        raise ValueError(f"unknown preset {preset!r}; `paco presets` lists them")
    config = parse_overrides(presets.get(preset), args, f"paco train --preset {preset}",
                             presets.PRESETS[preset].description)
    config_lib.validate(config)
    return config


def _flat(config: Config) -> dict:
    flat = {}
    for name, value in config_lib.to_dict(config).items():
        flat.update({f"{name}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {name: value})
    return flat


def differences(a: Config, b: Config, ignored: Sequence[str] = IGNORED_DIFFERENCES) -> list[str]:
    """Settings that differ between two configs, as 'section.field: a != b' (`ignored` aside)."""
    fa, fb = _flat(a), _flat(b)
    return [f"{k}: {fa.get(k, '-')!r} != {fb.get(k, '-')!r}" for k in dict.fromkeys([*fa, *fb])
            if fa.get(k) != fb.get(k) and k not in ignored]


def seed_differences(a: Config, b: Config) -> list[str]:
    """Settings that keep two configs from being seeds of one experiment."""
    return differences(a, b, SEED_LEVEL_SETTINGS)


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0-9', '0,3,5', '4' (or a mix: '0-2,7') as the seeds in that order."""
    seeds: list[int] = []
    for item in text.split(","):
        match = _SEEDS.match(item.strip())
        if not match or (match[2] is not None and int(match[2]) < int(match[1])):
            raise ValueError(f"bad --seeds {text!r}: give a seed (4), a range (0-9) or a list of them (0,3,5)")
        seeds.extend(range(int(match[1]), int(match[2] or match[1]) + 1))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"bad --seeds {text!r}: seed {repeated[0]} appears twice")
    return tuple(seeds)


def holds_run(run_dir: Path) -> bool:
    return any((Path(run_dir) / name).exists() for name in ("config.json", "metrics.jsonl", "checkpoints"))
