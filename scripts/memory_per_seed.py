"""Memory and checkpoint disk that one seed of each paper preset needs, to size a machine for `paco train --seeds`.

Everything is measured on the objects training builds, at the preset's full size: the replay buffer (its numpy
zeros are allocated lazily, so even 50M transitions cost nothing) and the train state of `init_state`, traced
rather than computed (jax.eval_shape: compiling every network's initialisers would take most of the run) and held
as zeros, since every size here depends on shapes and dtypes alone.

Checkpoints are written for a small buffer of the preset's shape and scaled to the full one: a checkpoint writes
its own files (networks, trainer state, the replay's small parts, written whole) plus the replay transitions added
since the checkpoint before it (paco/checkpoint.py), so

    full-buffer checkpoint     = own files + bytes per transition × tasks × capacity per task
    written per checkpoint     = own files + bytes per transition × train.checkpoint_every_env_steps

The replay lives in host memory and the train state on the accelerator; "seeds in 128 GiB" counts both against
90% of 128 GiB.

    python scripts/memory_per_seed.py [--presets mt10-rand-paco,mt50-rand-mtsac] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from paco import checkpoint, presets
from paco.envs import env_dims, make_env, task_names
from paco.logger import FILES as LOG_FILES
from paco.methods import build_method
from paco.replay import MultiTaskReplay
from paco.sac import init_state
from paco.trainer import RECENT_EPISODES

GIB, MIB = 2**30, 2**20
MACHINE_BYTES = 128 * GIB
USABLE_FRACTION = 0.9
SMALL_CAPACITY = 2_000  # per task, for the checkpoints actually written


def paper_presets() -> list[str]:
    return [name for name in presets.PRESETS if name.startswith("mt") and not name.endswith("-cpu")]


def traced_zeros(fn, *args):
    """`fn(*args)` as numpy zeros of the same shapes and dtypes, traced (jax.eval_shape), not computed."""
    return jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), jax.eval_shape(fn, *args))


def tree_bytes(tree) -> int:
    return sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(tree))


@functools.cache
def env_state(env_config) -> dict:
    """A freshly reset env's `get_state`, as a checkpoint stores it (Meta-World's is most of trainer.json)."""
    env = make_env(env_config, seed=0)
    try:
        env.reset()
        return env.get_state()
    finally:
        env.close()


def trainer_state(config, num_tasks: int, obs_dim: int, env_steps: int) -> dict:
    """What Trainer.save_checkpoint stores besides networks and replay, with every episode tracker full."""
    rng = np.random.default_rng(0)
    recent = [list(rng.uniform(0, 5_000, RECENT_EPISODES)) for _ in range(num_tasks)]
    return {"env_steps": env_steps, "obs": np.zeros((num_tasks, obs_dim), np.float32),
            "act_key": np.asarray(jax.random.PRNGKey(0)), "env": env_state(config.env),
            "eval_env": env_state(config.env), "logs": {name: 10**9 for name in LOG_FILES},
            "episode_return": np.zeros(num_tasks), "episode_success": np.zeros(num_tasks, bool),
            "recent_success": [[1.0] * RECENT_EPISODES] * num_tasks, "recent_return": recent,
            "update_metrics": [], "action_rng": rng.bit_generator.state, "stream": 0}


def filled_replay(num_tasks: int, capacity: int, obs_dim: int, action_dim: int, max_episode_steps: int):
    """A buffer filled to capacity with random transitions, episodes truncated at the time limit."""
    replay = MultiTaskReplay(num_tasks, capacity, obs_dim, action_dim, 0, max_episode_steps)
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((num_tasks, obs_dim), np.float32)
    for step in range(capacity):
        next_obs = rng.standard_normal((num_tasks, obs_dim), np.float32)
        truncated = np.full(num_tasks, (step + 1) % max_episode_steps == 0)
        replay.add(obs, rng.uniform(-1, 1, (num_tasks, action_dim)).astype(np.float32),
                   rng.standard_normal(num_tasks, np.float32), next_obs, np.zeros(num_tasks, bool), truncated)
        obs = next_obs
    return replay


def saved_sizes(method, state, replay: MultiTaskReplay, trainer: dict) -> tuple[int, int, int]:
    """Bytes of the checkpoint's own files, of its replay chunks and of its trainer.json, from one written to
    disk."""
    step = trainer["env_steps"]
    policy = traced_zeros(method.policy, state.params)
    state_tree = {"target_critic": state.target_critic, "opt_state": state.opt_state, "key": state.key,
                  "updates": state.updates, "policy": policy}  # as Trainer._state_tree
    with tempfile.TemporaryDirectory() as run_dir:
        path = checkpoint.save(run_dir, checkpoint.Snapshot(step, state.params, state_tree, replay, trainer), keep=2)
        chunk_files = (checkpoint.directory(run_dir) / checkpoint.REPLAY).rglob("*.npy")
        chunks = sum(chunk.stat().st_size for chunk in chunk_files)
        own = checkpoint.checkpoint_bytes(run_dir, step) - chunks
        return own, chunks, (path / checkpoint.TRAINER).stat().st_size


def measure(name: str) -> dict:
    config = presets.get(name)
    tasks = task_names(config.env)
    obs_dim, action_dim = env_dims(config.env)
    num_tasks, capacity = len(tasks), config.train.replay_capacity_per_task
    full = MultiTaskReplay(num_tasks, capacity, obs_dim, action_dim, 0, config.env.max_episode_steps)
    method = build_method(config.network, tasks, obs_dim, action_dim)
    state = traced_zeros(lambda key: init_state(method, config, key), jax.random.PRNGKey(0))

    small = filled_replay(num_tasks, SMALL_CAPACITY, obs_dim, action_dim, config.env.max_episode_steps)
    trainer = trainer_state(config, num_tasks, obs_dim, env_steps=small.added * num_tasks)
    own_small, chunks, trainer_json = saved_sizes(method, state, small, trainer)
    # The replay's small parts (the ring of final observations) are written whole and grow with the capacity.
    own = own_small - tree_bytes(small.extras) + tree_bytes(full.extras)
    per_transition = chunks / (num_tasks * SMALL_CAPACITY)

    replay_bytes, state_bytes = full.nbytes(), tree_bytes(state)
    two_array_bytes = num_tasks * capacity * (2 * obs_dim + action_dim + 2) * 4  # obs and next_obs both stored
    per_seed = replay_bytes + state_bytes
    return {"preset": name, "tasks": num_tasks, "capacity_per_task": capacity, "replay_bytes": replay_bytes,
            "replay_vs_two_array_layout": replay_bytes / two_array_bytes, "train_state_bytes": state_bytes,
            "per_seed_bytes": per_seed, "checkpoint_own_bytes": own, "trainer_json_bytes": trainer_json,
            "chunk_bytes_per_transition": per_transition,
            "full_checkpoint_bytes": round(own + per_transition * num_tasks * capacity),
            "written_per_checkpoint_bytes": round(own + per_transition * config.train.checkpoint_every_env_steps),
            "seeds_that_fit": int(MACHINE_BYTES * USABLE_FRACTION // per_seed)}


COLUMNS = [  # header, width, format of one row
    ("preset", 27, lambda r: r["preset"]),
    ("tasks", 5, lambda r: str(r["tasks"])),
    ("cap/task", 9, lambda r: f"{r['capacity_per_task']:,}"),
    ("replay GiB", 10, lambda r: f"{r['replay_bytes'] / GIB:.2f}"),
    ("÷2-array", 8, lambda r: f"{r['replay_vs_two_array_layout']:.3f}"),
    ("state MiB", 9, lambda r: f"{r['train_state_bytes'] / MIB:.1f}"),
    ("GiB/seed", 8, lambda r: f"{r['per_seed_bytes'] / GIB:.2f}"),
    ("ckpt GiB", 8, lambda r: f"{r['full_checkpoint_bytes'] / GIB:.2f}"),
    ("MiB/ckpt", 8, lambda r: f"{r['written_per_checkpoint_bytes'] / MIB:.0f}"),
    ("seeds/128GiB", 12, lambda r: str(r["seeds_that_fit"])),
]


def print_row(cells: list[str]) -> None:
    print("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                    for i, (cell, (_, width, _)) in enumerate(zip(cells, COLUMNS))), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(paper_presets()), help="comma-separated preset names")
    parser.add_argument("--json", type=Path, help="also write the rows, in bytes, to this file")
    args = parser.parse_args()
    start = time.perf_counter()
    print_row([header for header, _, _ in COLUMNS])
    rows = []
    for name in args.presets.split(","):
        rows.append(measure(name))
        print_row([cell(rows[-1]) for _, _, cell in COLUMNS])
    print("÷2-array: replay bytes over a buffer storing both obs and next_obs; ckpt GiB: one checkpoint of a full "
          "buffer; MiB/ckpt: written every train.checkpoint_every_env_steps")
    print(f"measured in {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
