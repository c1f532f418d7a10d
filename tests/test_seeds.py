"""Seeds trained together in one process: each is the run it would be alone (to float tolerance), seeds differ,
a scanned block of updates is the updates one by one, and a killed multi-seed process resumes every seed exactly."""

import json
import random
import subprocess

import jax
import numpy as np
import pytest

from paco import presets
from paco.checkpoint import checkpoint_steps
from paco.cli import main
from paco.config import replace
from paco.methods import build_method
from paco.sac import Batch, init_state, make_update, make_update_block
from paco.trainer import Trainer, stack, unstack
from test_resume import PROCESS_TIMEOUT, TINY_ARGS, kill_at_random_moment, paco_train, read

SMALL = {"total_env_steps": 480, "warmup_env_steps": 400, "log_every_env_steps": 40, "eval_every_env_steps": 0,
         "checkpoint_every_env_steps": 0, "replay_capacity_per_task": 1000, "updates_per_vector_step": 2,
         "progress": False}


def small_config(seed=0, preset="pointmass-paco"):
    return replace(presets.get(preset), seed=seed, network={"hidden": (32, 32)}, sac={"batch_per_task": 16},
                   train=SMALL)


def trained(configs, run_dirs):
    trainer = Trainer(configs, run_dirs)
    try:
        trainer.run()
    finally:
        trainer.close()
    return trainer


def metrics(run_dir):
    return [json.loads(line) for line in open(run_dir / "metrics.jsonl")]


def assert_trees_close(a, b, **tolerance):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tolerance)


@pytest.mark.parametrize("preset", ["pointmass-paco", "pointmass-pcgrad"])
def test_seeds_trained_together_equal_each_seed_trained_alone(tmp_path, preset):
    """40 updates (20 vector steps of 2) of seeds 0 and 2 in one process, and of each alone."""
    together = trained([small_config(0, preset), small_config(2, preset)], [tmp_path / "s0", tmp_path / "s2"])
    for index, seed in enumerate((0, 2)):
        alone = trained(small_config(seed, preset), tmp_path / f"alone{seed}")
        assert int(together.seed_state(index).updates) == int(alone.seed_state(0).updates) == 42
        assert_trees_close(together.seed_state(index).params, alone.seed_state(0).params, rtol=1e-4, atol=1e-5)
        logged, expected = metrics(tmp_path / f"s{seed}"), metrics(tmp_path / f"alone{seed}")
        assert [m.keys() for m in logged] == [m.keys() for m in expected]
        for line, reference in zip(logged, expected):
            for key, value in reference.items():
                assert line[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (seed, key)
    first, other = together.seed_state(0).params, together.seed_state(1).params
    differing = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(other))]
    assert sum(differing) > len(differing) // 2, differing
    losses = [[m["loss/critic"] for m in metrics(tmp_path / run) if "loss/critic" in m] for run in ("s0", "s2")]
    assert len(losses[0]) == 3 and losses[0] != losses[1]


def test_a_scanned_block_of_updates_equals_the_updates_one_by_one():
    config = small_config()
    method = build_method(config.network, ("rot0", "rot90", "rot180", "rot270"), 4, 2)
    state = init_state(method, config, jax.random.PRNGKey(3))
    rng = np.random.default_rng(0)
    n, t, b = 3, 4, 16
    batches = (rng.normal(size=(n, 1, t, b, 4)), rng.uniform(-1, 1, (n, 1, t, b, 2)), rng.normal(size=(n, 1, t, b)),
               rng.normal(size=(n, 1, t, b, 4)), np.zeros((n, 1, t, b)))
    batches = Batch(*(np.asarray(x, np.float32) for x in batches))
    blocked, policy, block_metrics = make_update_block(method, config)(stack([state]), batches)
    update = make_update(method, config)
    single = state
    for i in range(n):
        single, single_policy, single_metrics = update(single, jax.tree.map(lambda x, i=i: x[i, 0], batches))
        for key, value in single_metrics.items():
            np.testing.assert_allclose(block_metrics[key][i, 0], value, rtol=1e-5, atol=1e-6, err_msg=key)
    assert int(unstack(blocked, 0).updates) == n
    assert_trees_close(unstack(blocked, 0), single, rtol=1e-5, atol=1e-6)
    assert_trees_close(unstack(policy, 0), single_policy, rtol=1e-5, atol=1e-6)


def test_seeds_of_other_settings_are_refused(tmp_path):
    other = replace(small_config(1), sac={"batch_per_task": 8})
    with pytest.raises(ValueError, match="seeds trained together must share their settings: sac.batch_per_task"):
        Trainer([small_config(0), other], [tmp_path / "a", tmp_path / "b"])


def test_cli_trains_seeds_into_their_own_run_directories(tmp_path, capsys):
    args = ["train", "--preset", "pointmass-mtsac", "--seeds", "3-4", "--out", str(tmp_path), "--network.hidden", "16",
            "--sac.batch-per-task", "8", "--total-steps", "240", "--train.warmup-env-steps", "200",
            "--train.eval-episodes", "1", "--train.checkpoint-every-env-steps", "0", "--train.no-progress"]
    assert main(args) == 0
    for seed in (3, 4):
        saved = json.loads((tmp_path / f"seed{seed}" / "config.json").read_text())
        assert saved["seed"] == seed and saved["out"] == str(tmp_path / f"seed{seed}")
        assert checkpoint_steps(tmp_path / f"seed{seed}") == [240]
    assert main(args) == 2
    assert "hold other runs; continue with --resume" in capsys.readouterr().err
    assert main(["train", "--preset", "pointmass-mtsac", "--seeds", "3-4", "--seed", "1"]) == 2
    assert "give --seed or --seeds, not both" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # both already trained: nothing to do
    assert "already trained to 240 env steps" in capsys.readouterr().out


SEEDS = ["--seeds", "0-1"]


def test_sigkill_then_resume_gives_every_seed_identical_logs(tmp_path, subprocess_env):
    """Two seeds in one process (the exploding task makes Reset events), killed three times at random moments; the
    killed run steps its envs in two worker processes, the reference in process."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(paco_train(*TINY_ARGS, *SEEDS, "--out", reference), check=True, capture_output=True,
                   env=subprocess_env, timeout=PROCESS_TIMEOUT)
    fresh = paco_train(*TINY_ARGS, *SEEDS, "--train.env-workers", "2", "--out", killed, "--overwrite")
    resume = paco_train("--resume", killed / "seed0", killed / "seed1")
    rng = random.Random(1)
    command, kills = fresh, 0
    stderr = tmp_path / "stderr.txt"
    for attempt in range(4):
        with open(stderr, "wb") as err:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=subprocess_env)
        if attempt == 3 or not kill_at_random_moment(process, killed / "seed1", rng):
            assert process.wait(timeout=PROCESS_TIMEOUT) == 0, stderr.read_text()
            break
        kills += 1
        common = set(checkpoint_steps(killed / "seed0")) & set(checkpoint_steps(killed / "seed1"))
        command = resume if common else fresh
    assert kills >= 2
    for seed in ("seed0", "seed1"):
        for name in ("metrics.jsonl", "events.jsonl"):
            assert read(killed / seed / name) == read(reference / seed / name), (seed, name)
    assert read(reference / "seed0" / "metrics.jsonl") != read(reference / "seed1" / "metrics.jsonl")
