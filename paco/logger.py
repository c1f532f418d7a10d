"""Run-directory logging: metrics.jsonl (one JSON object per line), events.jsonl, timing.jsonl, TensorBoard.

metrics.jsonl holds only what the run computes, so that the same seed gives the same file byte for byte;
wall-clock figures go to timing.jsonl. `offsets()` is the position a checkpoint records; resuming truncates
every file back to it, so no line is written twice or lost.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter

FILES = ("metrics.jsonl", "events.jsonl", "timing.jsonl")


def _plain(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value


def truncate(run_dir: Path, offsets: dict[str, int]) -> None:
    """Cut each log back to a checkpoint's position; a log shorter than that cannot belong to the checkpoint."""
    for name in FILES:
        path = Path(run_dir) / name
        size = path.stat().st_size if path.exists() else 0
        if size < offsets[name]:
            raise ValueError(f"{path} holds {size} bytes, fewer than the {offsets[name]} its checkpoint recorded")
        if path.exists():
            os.truncate(path, offsets[name])


class WandbTracker:
    """Weights & Biases beside TensorBoard: the same metric names, env steps as every chart's x axis.

    The W&B run id is kept in the run directory (wandb-id.txt), so a resumed run continues its W&B run; what an
    interrupted run logged after its checkpoint is logged again at the same env steps. `WANDB_MODE=offline`
    writes everything under RUN_DIR/wandb for a later `wandb sync`."""

    ID_FILE = "wandb-id.txt"

    def __init__(self, run_dir: Path, fresh: bool, project: str, name: str, config: dict):
        import wandb

        id_path = Path(run_dir) / self.ID_FILE
        if fresh or not id_path.exists():
            id_path.write_text(uuid.uuid4().hex[:16])
        self.run = wandb.init(project=project, name=name, id=id_path.read_text().strip(), resume="allow",
                              config=config, dir=str(run_dir))
        self.run.define_metric("env_steps")
        self.run.define_metric("*", step_metric="env_steps")

    def log(self, record: dict) -> None:
        self.run.log({k: _plain(v) for k, v in record.items() if isinstance(_plain(v), (int, float))})

    def close(self) -> None:
        self.run.finish()


class RunLogger:
    """Appends to the run's logs; `fresh=True` starts them empty. `purge_step` makes TensorBoard drop what an
    interrupted run logged from that step on. `trackers` (e.g. a WandbTracker) receive every metrics and timing
    record as well."""

    def __init__(self, run_dir: Path, fresh: bool = True, purge_step: int | None = None, trackers: tuple = ()):
        self.run_dir = Path(run_dir)
        mode = "wb" if fresh else "ab"
        self.files = {name: open(self.run_dir / name, mode) for name in FILES}
        self.tensorboard = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)
        self.trackers = trackers

    def _write(self, name: str, record: dict) -> None:
        f = self.files[name]
        f.write((json.dumps({k: _plain(v) for k, v in record.items()}) + "\n").encode())
        f.flush()

    def log(self, record: dict) -> None:
        self._write("metrics.jsonl", record)
        step = record["env_steps"]
        for key, value in record.items():
            if key != "env_steps" and isinstance(_plain(value), (int, float)):
                self.tensorboard.add_scalar(key, _plain(value), step)
        for tracker in self.trackers:
            tracker.log(record)

    def event(self, record: dict) -> None:
        self._write("events.jsonl", record)

    def timing(self, record: dict) -> None:
        self._write("timing.jsonl", record)
        self.tensorboard.add_scalar("timing/env_steps_per_second", record["env_steps_per_second"],
                                    record["env_steps"])
        for tracker in self.trackers:
            tracker.log({"env_steps": record["env_steps"],
                         "timing/env_steps_per_second": record["env_steps_per_second"]})

    def offsets(self) -> dict[str, int]:
        """Durable end of every log (fsynced, so a checkpoint never points past what survives a power loss)."""
        for f in self.files.values():
            os.fsync(f.fileno())
        return {name: f.tell() for name, f in self.files.items()}

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.tensorboard.close()
        for tracker in self.trackers:
            tracker.close()


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
