"""`--track wandb`: the run's metrics also go to Weights & Biases, offline here, under the same names."""

import json

from paco import presets
from paco.config import replace
from paco.logger import read_jsonl
from paco.trainer import train


def test_wandb_offline_receives_every_metric_name(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    config = replace(presets.get("pointmass-mtsac"), out=str(out), network={"hidden": (8,)},
                     train={"total_env_steps": 400, "warmup_env_steps": 100, "eval_episodes": 1,
                            "eval_every_env_steps": 200, "log_every_env_steps": 100, "progress": False,
                            "track": "wandb"})
    train(config, out)
    (history,) = out.glob("wandb/offline-run-*/run-*.wandb")
    logged = history.read_bytes()
    records = read_jsonl(out / "metrics.jsonl")
    names = {key for record in records for key in record}
    assert "eval/success_rate" in names and "loss/critic" in names
    for name in names:
        assert name.encode() in logged, name
    evaluations = sum("eval/success_rate" in r for r in records)
    assert logged.count(b"eval/success_rate") >= evaluations
    assert json.loads((out / "config.json").read_text())["train"]["track"] == "wandb"
    assert (out / "wandb-id.txt").read_text().strip()  # a resumed run continues this W&B run
