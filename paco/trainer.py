"""The one training loop every method shares: collect → store → update → evaluate → log."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from paco import config as config_lib
from paco.config import Config
from paco.envs import make_env
from paco.evaluation import evaluate, success_table
from paco.logger import RunLogger
from paco.methods import Networks
from paco.nets import sample_tanh_gaussian
from paco.replay import MultiTaskReplay
from paco.sac import init_state, make_update

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
    """Holds everything a run needs; `run()` trains to `config.train.total_env_steps`."""

    def __init__(self, config: Config, run_dir: Path):
        self.config, self.run_dir = config, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
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
        self.replay = MultiTaskReplay(t, config.train.replay_capacity_per_task, self.env.obs_dim,
                                      self.env.action_dim, config.seed)
        self.action_rng = np.random.default_rng(config.seed + 1)
        self.logger = RunLogger(self.run_dir)
        self.env_steps = 0
        self.obs = self.env.reset()
        self.episode_return = np.zeros(t)
        self.episode_success = np.zeros(t, bool)
        self.recent_success = [deque(maxlen=RECENT_EPISODES) for _ in range(t)]
        self.recent_return = [deque(maxlen=RECENT_EPISODES) for _ in range(t)]
        self.update_metrics: list[dict] = []

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
                self.log_train((self.env_steps - last_steps) / (now - last_time))
                last_time, last_steps = now, self.env_steps
            if self._crossed(train.eval_every_env_steps) or self.env_steps >= total:
                final = self.evaluate()
                bar.set_postfix(eval_success=f"{final['success_rate']:.2f}")
        bar.close()
        self.logger.close()
        return final

    def _crossed(self, every: int) -> bool:
        t = self.env.num_tasks
        return every > 0 and self.env_steps // every > (self.env_steps - t) // every

    def collect(self) -> None:
        """One step of every task's env; transitions go to replay (true final obs where an episode ended)."""
        if self.env_steps < self.config.train.warmup_env_steps:
            action = self.action_rng.uniform(-1, 1, (self.env.num_tasks, self.env.action_dim))
        else:
            self.act_key, key = jax.random.split(self.act_key)
            action = np.asarray(self.explore(self.policy, self.obs, key))
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
        batch = self.replay.sample(self.config.sac.batch_per_task)
        self.state, self.policy, metrics = self.update(self.state, batch)
        metrics = jax.device_get(metrics)
        self.update_metrics.append(metrics)
        if not metrics["finite_grad"]:
            self.logger.event({"event": "nonfinite_grad", "env_steps": self.env_steps,
                               "update": int(self.state.updates)})
        mode = self.config.stability.mode
        event = {"vanilla": "nonfinite_loss", "maskout": "maskout"}.get(mode, "reset")
        if event == "reset" and not self.networks.arch.w_trainable:
            event = "maskout"
        for task in np.flatnonzero(~metrics["healthy"] | ~np.isfinite(metrics["loss/task"])):
            self.logger.event({"event": event, "env_steps": self.env_steps, "update": int(self.state.updates),
                               "task": int(task), "task_name": self.task_names[task],
                               "loss": float(metrics["loss/task"][task])})

    def log_train(self, steps_per_second: float) -> None:
        record = {"env_steps": self.env_steps, "updates": int(self.state.updates),
                  "env_steps_per_second": steps_per_second}
        finished = [s for s in self.recent_success if s]
        if finished:
            record["train/success_rate"] = float(np.mean([np.mean(s) for s in finished]))
            record["train/episode_return"] = float(np.mean([np.mean(r) for r in self.recent_return if r]))
        if self.update_metrics:
            stacked = {k: np.stack([m[k] for m in self.update_metrics]) for k in self.update_metrics[0]}
            for key in ("loss/critic", "loss/actor", "loss/alpha", "alpha", "entropy", "q"):
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
        return result


def train(config: Config, run_dir: Path) -> dict:
    trainer = Trainer(config, run_dir)
    try:
        result = trainer.run()
    finally:
        trainer.env.close()
        trainer.eval_env.close()
    print(success_table(result["success"]))
    return result
