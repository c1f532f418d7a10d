"""Envs stepped in worker processes: the same transitions as in process, exact resume, errors that surface,
no JAX in the workers."""

import dataclasses

import numpy as np
import pytest

from paco.config import EnvConfig
from paco.envs.workers import EnvWorkerError, make_seed_envs, resolve_workers

POINTMASS = EnvConfig(suite="pointmass", max_episode_steps=10)
METAWORLD = EnvConfig(suite="reach,push", max_episode_steps=20)


def run(envs, steps: int, seed: int = 0) -> list:
    """`steps` transitions under random actions drawn from `seed` (the same actions for any stack)."""
    rng = np.random.default_rng(seed)
    return [envs.step(rng.uniform(-1, 1, (envs.num_seeds, envs.num_tasks, envs.action_dim)).astype(np.float32))
            for _ in range(steps)]


def assert_same(left: list, right: list) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right):
        for field in dataclasses.fields(a):
            np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name), err_msg=field.name)


@pytest.mark.parametrize("config, seeds, steps", [(POINTMASS, [0, 1, 2], 25), (METAWORLD, [0, 1], 45)],
                         ids=["pointmass", "metaworld"])
def test_workers_step_as_in_process(config, seeds, steps):
    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()  # JAX's threads run in this process, as in the trainer: workers must not fork it
    with make_seed_envs(config, seeds, [0] * len(seeds), 0) as local, \
            make_seed_envs(config, seeds, [0] * len(seeds), 2) as workers:
        assert len(workers.workers) == 2
        for name in ("num_seeds", "num_tasks", "task_names", "obs_dim", "action_dim", "max_episode_steps"):
            assert getattr(workers, name) == getattr(local, name), name
        obs = workers.reset()
        np.testing.assert_array_equal(obs, local.reset())
        assert obs.shape == (len(seeds), workers.num_tasks, workers.obs_dim) and obs.dtype == np.float32
        assert not np.array_equal(obs[0], obs[1])  # each seed its own env
        stepped = run(workers, steps)
        assert_same(stepped, run(local, steps))
        assert stepped[0].reward.shape == stepped[0].success.shape == (len(seeds), workers.num_tasks)
        assert any(t.truncated.all() for t in stepped)  # episodes ended (autoreset) along the way
        for modules in workers.imported_modules():
            assert config is POINTMASS or "metaworld" in modules
            assert not [m for m in modules if m.split(".")[0] in ("jax", "jaxlib", "flax", "optax")]


@pytest.mark.parametrize("config, before", [(POINTMASS, 13), (METAWORLD, 2 * METAWORLD.max_episode_steps)],
                         ids=["pointmass", "metaworld"])
def test_state_resumes_in_fresh_workers(config, before):
    with make_seed_envs(config, [3, 4], [0, 1], 2) as workers:
        workers.reset()
        run(workers, before)
        assert workers.checkpointable()
        states = workers.get_state()
        assert len(states) == 2
        after = run(workers, 15, seed=1)
        assert workers.checkpointable() == (config is POINTMASS)  # Meta-World: only at episode starts
    with make_seed_envs(config, [3, 4], [0, 1], 2) as fresh:
        fresh.reset()
        fresh.set_state(states)
        assert_same(run(fresh, 15, seed=1), after)


def test_resolve_workers():
    mt10 = EnvConfig(suite="MT10")
    assert resolve_workers("auto", POINTMASS, 8, cpus=16) == 0
    assert resolve_workers("auto", EnvConfig(suite="pointmass:rot0,rot90"), 8, cpus=16) == 0
    assert resolve_workers("auto", mt10, 1, cpus=16) == 0
    assert resolve_workers("auto", mt10, 10, cpus=2) == 0
    assert resolve_workers("auto", mt10, 10, cpus=16) == 10
    assert resolve_workers("auto", mt10, 4, cpus=16) == 4
    assert resolve_workers("auto", mt10, 10, cpus=4) == 3
    assert resolve_workers("3", mt10, 10) == 3
    assert resolve_workers(0, mt10, 10) == 0
    assert resolve_workers("8", mt10, 2) == 2
    for bad in ("-1", "many", -2):
        with pytest.raises(ValueError, match=repr(bad)):
            resolve_workers(bad, mt10, 10)


def test_worker_errors_surface_and_close_cleanly():
    envs = make_seed_envs(POINTMASS, [0, 1, 2], [0, 0, 0], 2)
    envs.reset()
    states = envs.get_state()
    states[2] = {"not": "a point-mass state"}
    with pytest.raises(EnvWorkerError, match=r"seeds 2\).*set_state(.|\n)*KeyError: 'rng'"):
        envs.set_state(states)
    run(envs, 2)  # the workers still serve
    envs.workers[0].process.kill()
    with pytest.raises(EnvWorkerError, match=r"seeds 0, 1\) died during step"):
        run(envs, 1)
    processes = [w.process for w in envs.workers]
    envs.close()
    envs.close()
    assert all(p.poll() is not None for p in processes)


def test_a_failing_build_surfaces():
    with pytest.raises(EnvWorkerError, match=r"failed during start(.|\n)*explode_task 9"):
        make_seed_envs(dataclasses.replace(POINTMASS, explode_task=9), [0, 1], [0, 0], 2)

