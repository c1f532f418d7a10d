"""Run-directory logging: metrics.jsonl (one JSON object per line), events.jsonl, TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter


def _plain(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value


class RunLogger:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.metrics = open(self.run_dir / "metrics.jsonl", "a")
        self.events = open(self.run_dir / "events.jsonl", "a")
        self.tensorboard = SummaryWriter(str(self.run_dir / "tb"))

    def log(self, record: dict) -> None:
        record = {k: _plain(v) for k, v in record.items()}
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        step = record["env_steps"]
        for key, value in record.items():
            if key != "env_steps" and isinstance(value, (int, float)):
                self.tensorboard.add_scalar(key, value, step)

    def event(self, record: dict) -> None:
        self.events.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")
        self.events.flush()

    def close(self) -> None:
        self.metrics.close()
        self.events.close()
        self.tensorboard.close()


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
