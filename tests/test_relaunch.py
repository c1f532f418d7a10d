"""Stop-relaunch, the stabiliser all of Table 1's baselines ran with: an exploding critic sends the run back to
its newest good checkpoint (or to the start) on a new random stream, every relaunch is an event, and a run that
keeps exploding stops at the cap."""

import json

import numpy as np

from paco import presets
from paco.checkpoint import checkpoint_steps
from paco.cli import main
from paco.config import replace
from paco.logger import read_jsonl
from paco.trainer import train

TASKS = 4


def config(tmp_path, **env):
    return replace(presets.get("pointmass-mtsac"), out=str(tmp_path), seed=8, network={"hidden": (32, 32)},
                   env={"explode_task": 0, **env},
                   train={"total_env_steps": 4000, "warmup_env_steps": 1000, "eval_every_env_steps": 4000,
                          "log_every_env_steps": 400, "checkpoint_every_env_steps": 2000, "eval_episodes": 2,
                          "replay_capacity_per_task": 1000, "progress": False})


def first_explosion(seed, stream, after, total, probability):
    """The env step of the first scaled reward, drawn as envs.ExplodingReward draws it."""
    for step in range(after + TASKS, total + 1, TASKS):
        if np.random.default_rng((seed, stream, step)).random() < probability:
            return step
    return None


def test_a_transient_explosion_relaunches_from_the_checkpoint_and_the_run_finishes(tmp_path, resumes_identically):
    cfg = config(tmp_path, explode_after_env_steps=2000, explode_probability=0.002)
    # The premise, from the draws themselves: the first stream explodes soon after the checkpoint at 2000,
    # the stream after one relaunch never does.
    assert first_explosion(8, 0, 2000, 4000, 0.002) == 2212
    assert first_explosion(8, 1, 2000, 4000, 0.002) is None

    result = train(cfg, tmp_path)
    events = read_jsonl(tmp_path / "events.jsonl")
    relaunches = [e for e in events if e["event"] == "relaunch"]
    assert len(relaunches) == 1, events
    (event,) = relaunches
    assert event["from_step"] == 2000 and event["relaunch"] == 1
    assert event["env_steps"] > 2212 and event["critic_loss"] > 1e8
    # The run finished: its last checkpoint and evaluation are at the budget, and the logs hold each step once.
    assert checkpoint_steps(tmp_path)[-1] == 4000 and result is not None
    steps = [m["env_steps"] for m in read_jsonl(tmp_path / "metrics.jsonl") if "loss/critic" in m]
    assert steps == sorted(set(steps)) and steps[-1] == 4000
    losses = [m["loss/critic"] for m in read_jsonl(tmp_path / "metrics.jsonl") if m["env_steps"] > 2000 and
              "loss/critic" in m]
    assert max(losses) < 1e8  # the metrics are those of the relaunched stream, which never exploded

    # Killed after the relaunch, before another checkpoint: resuming continues on the relaunched stream.
    resumes_identically(cfg, tmp_path, 4000)


def test_the_relaunch_cap_ends_a_run_that_keeps_exploding(tmp_path, capsys):
    """Every step after 1200 explodes, before the first checkpoint: each relaunch starts over, the third
    explosion ends the run with one line on stderr and exit code 1."""
    out = tmp_path / "run"
    args = ["train", "--preset", "pointmass-mtsac", "--seed", "8", "--network.hidden", "32", "32",
            "--env.explode-task", "0", "--env.explode-after-env-steps", "1200", "--total-steps", "3000",
            "--train.warmup-env-steps", "1000", "--train.checkpoint-every-env-steps", "0",
            "--train.replay-capacity-per-task", "1000", "--train.eval-episodes", "1",
            "--stability.max-relaunches", "2", "--train.no-progress", "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("paco: error: the critic loss exploded"), err
    assert "after 2 relaunches, the limit set by stability.max_relaunches" in err
    events = [e for e in read_jsonl(out / "events.jsonl") if e["event"].startswith("relaunch")]
    assert [(e["event"], e["relaunch"], e["from_step"]) for e in events] == [
        ("relaunch", 1, 0), ("relaunch", 2, 0), ("relaunch_limit", 3, 0)]
    assert all(e["env_steps"] > 1200 for e in events)
    assert checkpoint_steps(out) == [] and json.loads((out / "config.json").read_text())["seed"] == 8
