"""Meta-World multi-task suites (MT10, MT50, any list of tasks) as one vector env, one sub-env per task.

Each sub-env is built by `metaworld.make_mt_envs` with its own seed (seed + task index), so sub-envs draw
their goals independently (one `gymnasium.make_vec` call would give every sub-env the same seed, and all
tasks would pick the same goal index on each reset). Observations are the 39-d Meta-World state: the task
id is not appended here, it travels as the row index. `make_scoring_vector_env` builds the same suite with
the one-hot appended, for Meta-World's own scorer.
"""

from __future__ import annotations

import pickle
from functools import partial

import gymnasium as gym
import numpy as np

from paco.envs.base import Transition


def suite_task_names(suite: str) -> tuple[str, ...]:
    """Meta-World task names of a suite: 'MT10', 'MT50', or comma-separated names ('reach,push')."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS, MT10_V3, MT50_V3

    if suite.upper() == "MT10":
        return tuple(MT10_V3)
    if suite.upper() == "MT50":
        return tuple(MT50_V3)
    names = tuple(n.strip() if n.strip().endswith("-v3") else f"{n.strip()}-v3" for n in suite.split(","))
    unknown = [n for n in names if n not in ALL_V3_ENVIRONMENTS]
    if unknown or not names:
        raise ValueError(f"unknown Meta-World task {', '.join(unknown) or repr(suite)}; "
                         f"known: MT10, MT50, or names such as reach, push, peg-insert-side")
    if len(set(names)) != len(names):
        raise ValueError(f"task listed twice in {suite!r}")
    return names


def _make_subenv(task_name: str, seed: int, max_episode_steps: int, reward_version: str, **extra) -> gym.Env:
    import metaworld

    return metaworld.make_mt_envs(task_name, seed=seed, max_episode_steps=max_episode_steps,
                                  reward_function_version=reward_version, terminate_on_success=False, **extra)


def _keep_goals(vector: gym.vector.VectorEnv) -> None:
    """Fixed goals: draw each task's goal once (from its own seeded generator), then keep it."""
    vector.call("sample_tasks")
    vector.call("toggle_sample_tasks_on_reset", False)


def make_scoring_vector_env(task_names: tuple[str, ...], seed: int = 0, max_episode_steps: int = 150,
                            random_goals: bool = True, reward_version: str = "v2") -> gym.vector.SyncVectorEnv:
    """The suite as `MetaWorldMultiTask` builds it, but as the bare gymnasium vector env with the task one-hot
    appended (`use_one_hot=True`): what `metaworld.evaluation.evaluation` scores an agent on."""
    vector = gym.vector.SyncVectorEnv(
        [partial(_make_subenv, name, seed + i, max_episode_steps, reward_version, use_one_hot=True,
                 env_id=i, num_tasks=len(task_names))
         for i, name in enumerate(task_names)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    if not random_goals:
        _keep_goals(vector)
    return vector


def _task_with_goal(tasks: list, rand_vec: np.ndarray):
    """The task of a sub-env's list whose random vector (goal and initial positions) is `rand_vec`."""
    for task in tasks:
        if np.array_equal(pickle.loads(task.data)["rand_vec"], rand_vec):
            return task
    raise ValueError("stored Meta-World goal is not among the sub-env's tasks")


class MetaWorldMultiTask:
    """One Meta-World sub-env per task, stepped synchronously, in the trainer's interface."""

    def __init__(self, task_names: tuple[str, ...], seed: int = 0, max_episode_steps: int = 150,
                 random_goals: bool = True, reward_version: str = "v2"):
        self.task_names = tuple(task_names)
        self.max_episode_steps = max_episode_steps
        self.random_goals = random_goals
        self.vector = gym.vector.SyncVectorEnv(
            [partial(_make_subenv, name, seed + i, max_episode_steps, reward_version)
             for i, name in enumerate(self.task_names)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        self.obs_dim = int(self.vector.single_observation_space.shape[0])
        self.action_dim = int(self.vector.single_action_space.shape[0])
        if not random_goals:
            _keep_goals(self.vector)
        self.obs: np.ndarray | None = None  # the latest observation, None before the first reset

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def reset(self) -> np.ndarray:
        obs, _ = self.vector.reset()
        self.obs = obs.astype(np.float32)
        return self.obs

    def step(self, actions: np.ndarray) -> Transition:
        obs, reward, terminated, truncated, info = self.vector.step(np.asarray(actions, np.float64))
        done = terminated | truncated
        # Sub-envs that just reset report no step info; theirs is in final_info.
        success = np.asarray(info.get("success", np.zeros(self.num_tasks)), dtype=float) > 0
        final_obs = obs.copy()
        if done.any():
            final = info["final_info"]
            final_obs[done] = np.stack(info["final_obs"][done])
            success[done] = np.asarray(final["success"], dtype=float)[done] > 0
        self.obs = obs.astype(np.float32)
        return Transition(self.obs, reward.astype(np.float32), terminated, truncated,
                          success, final_obs.astype(np.float32))

    def checkpointable(self) -> bool:
        """Whether `get_state` is exact now: every sub-env has just started an episode. With equal episode
        lengths and no early termination (terminate_on_success off), that holds every max_episode_steps."""
        return all(length == 0 for length in self.vector.get_attr("curr_path_length"))

    def get_state(self) -> dict:
        """Meta-World's own checkpoint of every sub-env (goal list, RNG states) and the goal each is on.

        At the start of an episode the simulator state is a function of the goal alone, so `set_state` re-runs
        the reset onto that goal instead of storing MuJoCo's state; mid-episode states are not restorable.
        """
        started = self.obs is not None
        return {"checkpoints": self.vector.call("get_checkpoint"),
                "rand_vec": [np.asarray(v) for v in self.vector.get_attr("_last_rand_vec")] if started else None,
                "path_length": list(self.vector.get_attr("curr_path_length")), "obs": self.obs}

    def set_state(self, state: dict) -> None:
        """Restore `get_state`; raises ValueError where it was taken mid-episode or the reset does not
        reproduce the stored observation (another Meta-World version)."""
        if state["obs"] is not None and any(state["path_length"]):
            raise ValueError("Meta-World state was saved mid-episode; only episode starts can be restored")
        observations = []
        for i, (env, checkpoint) in enumerate(zip(self.vector.envs, state["checkpoints"])):
            env.load_checkpoint([checkpoint])
            if state["obs"] is not None:
                env.unwrapped.set_task(_task_with_goal(env.get_wrapper_attr("tasks"), state["rand_vec"][i]))
                env.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)
                observations.append(env.reset()[0])
                env.load_checkpoint([checkpoint])  # RNG states and the sample-on-reset switch as they were
        self.obs = np.stack(observations).astype(np.float32) if observations else None
        if state["obs"] is not None and not np.array_equal(self.obs, state["obs"]):
            raise ValueError("restored Meta-World sub-envs do not reproduce the stored observations")

    def goals(self) -> np.ndarray:
        """The current goal of every sub-env (for checks and visualisation)."""
        return np.stack(self.vector.get_attr("_target_pos"))

    def close(self) -> None:
        self.vector.close()
