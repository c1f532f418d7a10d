"""Runs that survive crashes: SIGKILL at random moments and resume gives the uninterrupted run's logs line for
line; the same seed gives the same metrics; corrupt, partial and foreign checkpoints are detected."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paco import checkpoint, presets
from paco.checkpoint import CheckpointError, FormatVersionError, checkpoint_steps, restore_params
from paco.config import replace
from paco.trainer import Trainer

# Four point-mass tasks, a reward that explodes on task 0 from step 1000 (so Reset writes events), a checkpoint
# every 100 vector steps, between log lines (so checkpoints hold unlogged update metrics): a run takes seconds.
TINY = {"total_env_steps": 4000, "warmup_env_steps": 400, "log_every_env_steps": 600,
        "eval_every_env_steps": 2000, "eval_episodes": 2, "checkpoint_every_env_steps": 400,
        "keep_checkpoints": 3, "replay_capacity_per_task": 2000, "progress": False}
PROCESS_TIMEOUT = 300  # seconds; one such run takes about 10 here
TINY_ARGS = ["--preset", "pointmass-paco", "--network.hidden", "32", "32", "--sac.batch-per-task", "16",
             "--env.explode-task", "0", "--env.explode-after-env-steps", "1000", "--env.explode-scale", "1e8",
             *[f"--train.{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "progress"],
             "--train.no-progress"]


def tiny_config(seed=0, **train):
    return replace(presets.get("pointmass-paco"), seed=seed, network={"hidden": (32, 32)},
                   sac={"batch_per_task": 16}, train={**TINY, **train},
                   env={"explode_task": 0, "explode_after_env_steps": 1000, "explode_scale": 1e8})


def train_in_process(config, run_dir, resume=False):
    trainer = Trainer(config, run_dir, resume)
    try:
        trainer.run()
    finally:
        trainer.close()
    return trainer


def paco_train(*args):
    return [sys.executable, "-m", "paco.cli", "train", *map(str, args)]


def read(path):
    return Path(path).read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, subprocess_env):
    """An uninterrupted run of TINY_ARGS, in its own process."""
    run_dir = tmp_path_factory.mktemp("reference")
    subprocess.run(paco_train(*TINY_ARGS, "--out", run_dir), check=True, capture_output=True, env=subprocess_env,
                   timeout=PROCESS_TIMEOUT)
    return run_dir


def test_reference_run_logs_metrics_events_and_checkpoints(reference):
    metrics = [json.loads(line) for line in read(reference / "metrics.jsonl").splitlines()]
    assert [m["env_steps"] for m in metrics if "updates" in m and "eval/success_rate" not in m] == \
        [*range(600, 4000, 600), 4000]
    assert not any("per_second" in key for m in metrics for key in m), "wall-clock figures belong in timing.jsonl"
    assert read(reference / "events.jsonl"), "the exploding task should have produced Reset events"
    assert checkpoint_steps(reference) == [3200, 3600, 4000]


def kill_at_random_moment(process, run_dir, rng) -> bool:
    """SIGKILL `process` at a random moment: a third of the time while it starts up or restores, otherwise a
    random time after it has logged something new (so that the kill lands among updates and checkpoint writes).
    False where the process finished first."""
    metrics = run_dir / "metrics.jsonl"
    if rng.random() < 1 / 3:
        delay = rng.uniform(0.0, 1.5)
    else:
        size = metrics.stat().st_size if metrics.exists() else 0
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while process.poll() is None and (not metrics.exists() or metrics.stat().st_size <= size):
            assert time.monotonic() < deadline, f"no new log line in {PROCESS_TIMEOUT} s"
            time.sleep(0.02)
        delay = rng.uniform(0.0, 0.3)
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def test_sigkill_at_random_moments_then_resume_gives_identical_logs(reference, tmp_path, subprocess_env):
    run_dir = tmp_path / "killed"
    fresh = paco_train(*TINY_ARGS, "--out", run_dir, "--overwrite")
    resume = paco_train("--resume", run_dir)
    rng = random.Random(0)
    resumed_from = []
    command = fresh
    stderr = tmp_path / "stderr.txt"  # a file, not a pipe: a full pipe would block the process
    for attempt in range(7):
        with open(stderr, "wb") as err:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=subprocess_env)
        if attempt == 6 or not kill_at_random_moment(process, run_dir, rng):
            assert process.wait(timeout=PROCESS_TIMEOUT) == 0, stderr.read_text()
            break
        steps = checkpoint_steps(run_dir)
        resumed_from.append(steps[-1] if steps else None)
        command = resume if steps else fresh  # killed before its first checkpoint: start again
    assert len(resumed_from) >= 3 and any(step is not None for step in resumed_from), resumed_from
    for name in ("metrics.jsonl", "events.jsonl"):
        assert read(run_dir / name) == read(reference / name), name


def test_same_seed_same_metrics_other_seed_other_metrics(reference, tmp_path):
    """The reference ran in another process: a shorter run of the same seed logs the same lines up to its end."""
    config = tiny_config(total_env_steps=1200, eval_every_env_steps=0)
    for name, seed in (("same", 0), ("other", 1)):
        train_in_process(replace(config, seed=seed), tmp_path / name)
    lines = [line for line in read(tmp_path / "same" / "metrics.jsonl").splitlines() if b"eval/" not in line]
    assert len(lines) == 2 and lines == read(reference / "metrics.jsonl").splitlines()[:2]
    assert read(tmp_path / "other" / "metrics.jsonl").splitlines() != lines


def test_corrupt_newest_checkpoint_falls_back_to_previous_with_warning(reference, tmp_path, subprocess_env):
    run_dir = tmp_path / "run"
    subprocess.run(["cp", "-r", reference, run_dir], check=True)
    newest = run_dir / "checkpoints" / checkpoint.step_name(4000)
    params = bytearray(read(newest / "params.msgpack"))
    params[len(params) // 2] ^= 0xFF
    (newest / "params.msgpack").write_bytes(bytes(params))
    result = subprocess.run(paco_train("--resume", run_dir), capture_output=True, env=subprocess_env,
                            timeout=PROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr.decode()
    warnings = [line for line in result.stderr.decode().splitlines() if "warning" in line]
    assert warnings == ["paco: warning: checkpoint step_000000004000 is corrupt (checksum mismatch in "
                        "params.msgpack); using step_000000003600"]
    for name in ("metrics.jsonl", "events.jsonl"):
        assert read(run_dir / name) == read(reference / name), name
    assert checkpoint_steps(run_dir) == [3200, 3600, 4000]
    restore_params(run_dir, 4000)  # rewritten, good again


def test_interrupted_checkpoint_write_leaves_the_previous_one_in_use(tmp_path, monkeypatch):
    config = tiny_config(total_env_steps=1600, eval_every_env_steps=0)
    real_replace = os.replace
    renames = []

    def crash_on_third_checkpoint(src, dst):
        if Path(src).name.startswith(".tmp-step_"):  # a checkpoint (replay chunks are renamed before it)
            renames.append(dst)
            if len(renames) == 3:
                raise KeyboardInterrupt("killed between writing a checkpoint and renaming it into place")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_third_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_in_process(config, tmp_path)
    monkeypatch.undo()
    assert checkpoint_steps(tmp_path) == [400, 800]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert restore_params(tmp_path)[2] == 800
    # A checkpoint directory without its manifest is skipped as well.
    (tmp_path / "checkpoints" / checkpoint.step_name(1000)).mkdir()
    assert restore_params(tmp_path)[2] == 800
    train_in_process(config, tmp_path, resume=True)
    assert checkpoint_steps(tmp_path) == [800, 1200, 1600]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


def test_overlapped_run_acts_one_update_behind_and_resumes_exactly(tmp_path, monkeypatch):
    """With the env step overlapping the update, the envs act with the policy from before the update in flight;
    checkpoints catch up to the newest policy, so a run interrupted after one resumes exactly."""
    config = tiny_config(total_env_steps=2000, eval_every_env_steps=1000, overlap_env_and_update="on")
    trainer = Trainer(config, tmp_path / "probe")
    while trainer.env_steps < config.train.warmup_env_steps:
        trainer.collect()
    before, obs, keys = trainer.policy, trainer.obs, trainer.act_keys
    trainer.learn()
    expected, _ = trainer.explore(before, obs, keys)  # the next step's actions: from the policy before the update
    np.testing.assert_array_equal(trainer.next_action, np.asarray(expected))
    assert trainer.policy is not before and trainer.update_in_flight is not None
    trainer.collect()
    assert trainer.next_action is None
    trainer.learn()
    assert trainer.update_in_flight is not None and len(trainer.seeds[0].update_metrics) == 1
    trainer.close()

    train_in_process(config, tmp_path / "whole")
    serial = train_in_process(replace(config, train={"overlap_env_and_update": "off"}), tmp_path / "serial")
    assert not serial.overlap
    assert read(tmp_path / "whole" / "metrics.jsonl") != read(tmp_path / "serial" / "metrics.jsonl")

    real_save = Trainer.save_checkpoint

    def crash_after_checkpoint_at_1200(self):
        path = real_save(self)
        if self.env_steps == 1200:
            raise KeyboardInterrupt("killed after the checkpoint at 1200")
        return path

    monkeypatch.setattr(Trainer, "save_checkpoint", crash_after_checkpoint_at_1200)
    with pytest.raises(KeyboardInterrupt):
        train_in_process(config, tmp_path / "interrupted")
    monkeypatch.undo()
    train_in_process(config, tmp_path / "interrupted", resume=True)
    for name in ("metrics.jsonl", "events.jsonl"):
        assert read(tmp_path / "interrupted" / name) == read(tmp_path / "whole" / name), name


def test_restore_params_reads_params_only_and_reports_problems(tmp_path):
    config = tiny_config(total_env_steps=800, eval_every_env_steps=0)
    trainer = train_in_process(config, tmp_path)
    loaded_config, params, step = restore_params(tmp_path)
    assert step == 800 and loaded_config == config
    assert set(params) == {"actor", "critic", "w", "log_alpha"}
    np.testing.assert_array_equal(params["w"], np.asarray(trainer.seed_state(0).params["w"]))
    assert restore_params(tmp_path, 400)[2] == 400
    for name in os.listdir(tmp_path / "checkpoints" / checkpoint.step_name(800) / "replay"):
        os.remove(tmp_path / "checkpoints" / checkpoint.step_name(800) / "replay" / name)
    assert restore_params(tmp_path)[2] == 800, "restore_params must not need the replay buffer"
    with pytest.raises(CheckpointError, match="no checkpoint at step 123"):
        restore_params(tmp_path, 123)
    with pytest.raises(CheckpointError, match="not a run directory"):
        restore_params(tmp_path / "elsewhere")
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "config.json").write_bytes(read(tmp_path / "config.json"))
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        restore_params(tmp_path / "fresh")
    manifest = tmp_path / "checkpoints" / checkpoint.step_name(800) / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format": 999}))
    with pytest.raises(FormatVersionError, match="format version 999"):
        restore_params(tmp_path)


def test_metaworld_run_resumes_exactly_from_an_episode_start(tmp_path):
    """Meta-World checkpoints wait for a step where every sub-env has just started an episode (every 20 vector
    steps here), and resuming from one continues as the uninterrupted run did, evaluations included."""
    config = replace(presets.get("mt10-rand-paco"), env={"suite": "reach,push", "max_episode_steps": 20},
                     network={"hidden": (16,), "num_components": 2}, sac={"batch_per_task": 8},
                     train={"total_env_steps": 400, "warmup_env_steps": 100, "log_every_env_steps": 60,
                            "eval_every_env_steps": 200, "eval_episodes": 1, "checkpoint_every_env_steps": 100,
                            "keep_checkpoints": 4, "replay_capacity_per_task": 200, "progress": False})
    train_in_process(config, tmp_path / "full")
    assert checkpoint_steps(tmp_path / "full") == [120, 200, 320, 400]
    subprocess.run(["cp", "-r", tmp_path / "full", tmp_path / "resumed"], check=True)
    for step in (320, 400):
        checkpoint.remove(tmp_path / "resumed", step)
    train_in_process(config, tmp_path / "resumed", resume=True)
    for name in ("metrics.jsonl", "events.jsonl"):
        assert read(tmp_path / "resumed" / name) == read(tmp_path / "full" / name), name
    assert read(tmp_path / "resumed" / "metrics.jsonl").count(b"eval/success_rate") == 2
