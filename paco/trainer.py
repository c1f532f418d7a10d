"""The one training loop every method shares: collect → store → update → evaluate → log → checkpoint."""

from __future__ import annotations

import shutil
import time
from collections import deque
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from paco import checkpoint
from paco import config as config_lib
from paco import logger as logger_lib
from paco.allocator import keep_freed_memory
from paco.config import Config
from paco.envs import make_env
from paco.evaluation import evaluate, success_table
from paco.logger import RunLogger
from paco.methods import Networks
from paco.nets import sample_tanh_gaussian
from paco.plots import plot_success
from paco.replay import MultiTaskReplay
from paco.sac import TrainState, init_state, make_update

EVAL_SEED_OFFSET = 10_000
RECENT_EPISODES = 10


def make_policies(networks: Networks):
    """Jitted acting for one observation per task, from weights composed once per update."""
    onehot = networks.onehot()

    @jax.jit
    def explore(policy_weights, obs, key):
        mean, log_std = networks.policy_distribution(policy_weights, obs[:, None], onehot)
        return sample_tanh_gaussian(key, mean, log_std)[0][:, 0]

    @jax.jit
    def exploit(policy_weights, obs):
        return jnp.tanh(networks.policy_distribution(policy_weights, obs[:, None], onehot)[0][:, 0])

    return explore, exploit


class Trainer:
    """Holds everything a run needs; `run()` trains to `config.train.total_env_steps`.

    A fresh trainer starts the run directory's logs and checkpoints anew; `resume=True` continues from the
    newest good checkpoint instead (raises checkpoint.CheckpointError where there is none).
    """

    def __init__(self, config: Config, run_dir: Path, resume: bool = False):
        config_lib.validate(config)
        keep_freed_memory()
        self.config, self.run_dir = config, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            config_lib.save(config, self.run_dir / "config.json")
        self.env = make_env(config.env, config.seed)
        self.eval_env = make_env(config.env, config.seed + EVAL_SEED_OFFSET)
        self.task_names = self.env.task_names
        t = self.env.num_tasks
        self.networks = Networks.build(config.network, t, self.env.obs_dim, self.env.action_dim)
        key_init, self.act_key = jax.random.split(jax.random.PRNGKey(config.seed))
        self.state = init_state(self.networks, config.sac, key_init)
        self.update = make_update(self.networks, config)
        self.explore, self.exploit = make_policies(self.networks)
        self.policy = self.networks.policy_weights(self.state.params["actor"],
                                                   self.networks.task_vectors(self.state.params["w"]))
        self.acting_policy = self.policy  # what `collect` acts with: `policy`, or the one before it (overlap)
        overlap = config.train.overlap_env_and_update
        self.overlap = overlap == "on" or (overlap == "auto" and jax.default_backend() != "cpu")
        self.update_in_flight: tuple[dict, int] | None = None  # (metrics, env steps) of an update not waited for
        self.replay = MultiTaskReplay(t, config.train.replay_capacity_per_task, self.env.obs_dim,
                                      self.env.action_dim, config.seed)
        self.action_rng = np.random.default_rng(config.seed + 1)
        self.env_steps = 0
        self.checkpoint_step = 0
        self.obs = self.env.reset()
        self.episode_return = np.zeros(t)
        self.episode_success = np.zeros(t, bool)
        self.recent_success = [deque(maxlen=RECENT_EPISODES) for _ in range(t)]
        self.recent_return = [deque(maxlen=RECENT_EPISODES) for _ in range(t)]
        self.update_metrics: list[dict] = []
        if resume:
            self.restore()
        else:
            shutil.rmtree(checkpoint.directory(self.run_dir), ignore_errors=True)
            shutil.rmtree(self.run_dir / "tb", ignore_errors=True)
            self.logger = RunLogger(self.run_dir, fresh=True)

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self) -> dict:
        train = self.config.train
        t = self.env.num_tasks
        total = train.total_env_steps
        start, last_time, last_steps = self.env_steps, time.perf_counter(), self.env_steps
        bar = tqdm(total=total, initial=start, unit="step", unit_scale=True, disable=not train.progress,
                   desc=self.config.preset or "train", dynamic_ncols=True)
        final = None
        while self.env_steps < total:
            self.collect()
            if self.env_steps >= train.warmup_env_steps:
                for _ in range(train.updates_per_vector_step):
                    self.learn()
            bar.update(t)
            if self._crossed(train.log_every_env_steps) or self.env_steps >= total:
                now = time.perf_counter()
                rate = (self.env_steps - last_steps) / (now - last_time)
                self.log_train()
                self.logger.timing({"env_steps": self.env_steps, "env_steps_per_second": rate})
                bar.set_postfix(steps_per_s=f"{rate:.0f}")
                last_time, last_steps = now, self.env_steps
            if self._crossed(train.eval_every_env_steps) or self.env_steps >= total:
                final = self.evaluate()
                bar.set_postfix(eval_success=f"{final['success_rate']:.2f}")
            if self._checkpoint_due() or self.env_steps >= total:
                self.save_checkpoint()
        bar.close()
        self.logger.close()
        return final

    def _crossed(self, every: int) -> bool:
        t = self.env.num_tasks
        return every > 0 and self.env_steps // every > (self.env_steps - t) // every

    def _checkpoint_due(self) -> bool:
        """An interval boundary was passed since the last checkpoint, and the envs can be saved exactly now."""
        every = self.config.train.checkpoint_every_env_steps
        return (every > 0 and self.env_steps // every > self.checkpoint_step // every
                and self.env.checkpointable())

    def save_checkpoint(self) -> Path:
        """Everything `restore` needs to continue exactly as this run would have (see paco/checkpoint.py)."""
        # With overlap, the envs act with the newest policy from here on, as a resumed run will.
        self.finish_update()
        self.acting_policy = self.policy
        params = self.state.params
        state = {"target_critic": self.state.target_critic, "opt_state": self.state.opt_state,
                 "key": self.state.key, "updates": self.state.updates, "policy": self.policy}
        replay = self.replay.state()
        trainer = {
            "env_steps": self.env_steps, "obs": self.obs, "episode_return": self.episode_return,
            "episode_success": self.episode_success, "recent_success": [list(d) for d in self.recent_success],
            "recent_return": [list(d) for d in self.recent_return], "update_metrics": self.update_metrics,
            "act_key": np.asarray(self.act_key), "action_rng": self.action_rng.bit_generator.state,
            "replay": {k: replay.pop(k) for k in ("position", "size", "rng")},
            "env": self.env.get_state(), "eval_env": self.eval_env.get_state(), "logs": self.logger.offsets(),
        }
        path = checkpoint.save(self.run_dir, checkpoint.Snapshot(self.env_steps, params, state, replay, trainer),
                               self.config.train.keep_checkpoints)
        self.checkpoint_step = self.env_steps
        return path

    def restore(self) -> None:
        """Continue from the newest good checkpoint: state, replay, every RNG, envs, trackers; logs cut back."""
        template = {"target_critic": self.state.target_critic, "opt_state": self.state.opt_state,
                    "key": self.state.key, "updates": self.state.updates, "policy": self.policy}
        snapshot = checkpoint.load(self.run_dir, template)
        try:
            params = flax.serialization.from_state_dict(self.state.params, snapshot.params)
        except (KeyError, ValueError) as error:
            raise checkpoint.CheckpointError(f"checkpoint at step {snapshot.step} does not fit this run's "
                                             f"networks: {error}") from None
        as_jax = lambda tree: jax.tree.map(jnp.asarray, tree)  # noqa: E731
        saved = as_jax(snapshot.state)
        self.state = TrainState(as_jax(params), saved["target_critic"], saved["opt_state"], saved["key"],
                                saved["updates"])
        self.policy = self.acting_policy = saved["policy"]
        t = snapshot.trainer
        self.replay.load_state({**t["replay"], **snapshot.replay})
        self.env_steps = self.checkpoint_step = t["env_steps"]
        self.obs, self.episode_return, self.episode_success = t["obs"], t["episode_return"], t["episode_success"]
        self.recent_success = [deque(d, maxlen=RECENT_EPISODES) for d in t["recent_success"]]
        self.recent_return = [deque(d, maxlen=RECENT_EPISODES) for d in t["recent_return"]]
        self.update_metrics = t["update_metrics"]
        self.act_key = jnp.asarray(t["act_key"])
        self.action_rng.bit_generator.state = t["action_rng"]
        self.env.set_state(t["env"])
        self.eval_env.set_state(t["eval_env"])
        for step in checkpoint.checkpoint_steps(self.run_dir):  # newer ones failed to load: they are rewritten
            if step > snapshot.step:
                checkpoint.remove(self.run_dir, step)
        try:
            logger_lib.truncate(self.run_dir, t["logs"])
        except ValueError as error:
            raise checkpoint.CheckpointError(str(error)) from None
        self.logger = RunLogger(self.run_dir, fresh=False, purge_step=self.env_steps + 1)

    def collect(self) -> None:
        """One step of every task's env; transitions go to replay (true final obs where an episode ended)."""
        if self.env_steps < self.config.train.warmup_env_steps:
            action = self.action_rng.uniform(-1, 1, (self.env.num_tasks, self.env.action_dim))
        else:
            self.act_key, key = jax.random.split(self.act_key)
            action = np.asarray(self.explore(self.acting_policy, self.obs, key))
        step = self.env.step(action)
        self.replay.add(self.obs, action, step.reward, step.final_obs, step.terminated)
        self.episode_return += step.reward
        self.episode_success |= step.success
        for i in np.flatnonzero(step.terminated | step.truncated):
            self.recent_success[i].append(float(self.episode_success[i]))
            self.recent_return[i].append(self.episode_return[i])
            self.episode_success[i], self.episode_return[i] = False, 0.0
        self.obs = step.obs
        self.env_steps += self.env.num_tasks

    def learn(self) -> None:
        """One update. With overlap it is only started: the envs' next step runs while it computes, acting
        with the policy from before it, and it is waited for when the next update starts."""
        self.finish_update()
        batch = self.replay.sample(self.config.sac.batch_per_task)
        previous = self.policy
        self.state, self.policy, metrics = self.update(self.state, batch)
        self.update_in_flight = metrics, self.env_steps
        if self.overlap:
            self.acting_policy = previous
        else:
            self.finish_update()
            self.acting_policy = self.policy

    def finish_update(self) -> None:
        """Wait for the update in flight, if any; record its metrics and report its masked tasks."""
        if self.update_in_flight is None:
            return
        (metrics, env_steps), self.update_in_flight = jax.device_get(self.update_in_flight), None
        self.update_metrics.append(metrics)
        masked = np.flatnonzero(~metrics["healthy"] | ~np.isfinite(metrics["loss/task"]))
        if metrics["finite_grad"] and not masked.size:
            return
        update = int(self.state.updates)  # the update just finished: the next is not dispatched yet
        if not metrics["finite_grad"]:
            self.logger.event({"event": "nonfinite_grad", "env_steps": env_steps, "update": update})
        mode = self.config.stability.mode
        event = {"vanilla": "nonfinite_loss", "maskout": "maskout"}.get(mode, "reset")
        if event == "reset" and not self.networks.arch.w_trainable:
            event = "maskout"
        for task in masked:
            self.logger.event({"event": event, "env_steps": env_steps, "update": update,
                               "task": int(task), "task_name": self.task_names[task],
                               "loss": float(metrics["loss/task"][task])})

    def log_train(self) -> None:
        self.finish_update()
        record = {"env_steps": self.env_steps, "updates": int(self.state.updates)}
        finished = [s for s in self.recent_success if s]
        if finished:
            record["train/success_rate"] = float(np.mean([np.mean(s) for s in finished]))
            record["train/episode_return"] = float(np.mean([np.mean(r) for r in self.recent_return if r]))
        if self.update_metrics:
            stacked = {k: np.stack([m[k] for m in self.update_metrics]) for k in self.update_metrics[0]}
            for key in ("loss/critic", "loss/actor", "loss/alpha", "alpha", "entropy", "q", "grad_norm"):
                record[key] = float(np.nanmean(stacked[key]))
            record["masked_task_updates"] = int((~stacked["healthy"]).sum())
            self.update_metrics = []
        self.logger.log(record)

    def evaluate(self) -> dict:
        result = evaluate(self.eval_env, lambda obs: np.asarray(self.exploit(self.policy, obs)),
                          self.config.train.eval_episodes)
        record = {"env_steps": self.env_steps, "updates": int(self.state.updates),
                  "eval/success_rate": result["success_rate"],
                  "eval/return": float(np.mean(list(result["return"].values())))}
        record.update({f"eval/success/{name}": rate for name, rate in result["success"].items()})
        self.logger.log(record)
        plot_success(self.run_dir)
        return result


def train(config: Config, run_dir: Path, resume: bool = False) -> dict | None:
    """Train (or continue) a run; None where a resumed run had already finished."""
    if resume and checkpoint.newest_step(run_dir) >= config.train.total_env_steps:
        print(f"{run_dir}: already trained to {config.train.total_env_steps} env steps")
        return None
    trainer = Trainer(config, run_dir, resume)
    try:
        result = trainer.run()
    finally:
        trainer.env.close()
        trainer.eval_env.close()
    print(success_table(result["success"]))
    return result
