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
from paco.logger import RunLogger, WandbTracker
from paco.methods import Method, build_method
from paco.nets import sample_tanh_gaussian
from paco.plots import plot_success
from paco.replay import MultiTaskReplay
from paco.runlock import run_lock
from paco.sac import TrainState, init_state, make_update
from paco.transfer import shared_parameters_from

EVAL_SEED_OFFSET = 10_000
RECENT_EPISODES = 10


def make_policies(method: Method):
    """Jitted acting for one observation per task, from the policy the update prepared."""

    @jax.jit
    def explore(policy, obs, key):
        mean, log_std = method.policy_distribution(policy, obs[:, None])
        return sample_tanh_gaussian(key, mean, log_std)[0][:, 0]

    @jax.jit
    def exploit(policy, obs):
        return jnp.tanh(method.policy_distribution(policy, obs[:, None])[0][:, 0])

    return explore, exploit


class Relaunch(Exception):
    """The critic loss exploded: the run goes back to its newest good checkpoint on a new random stream."""


class RelaunchLimit(Exception):
    """The critic loss exploded once more after `stability.max_relaunches` relaunches: the run stops."""


def relaunch_events(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "events.jsonl"
    if not path.exists():
        return []
    return [e for e in logger_lib.read_jsonl(path) if e.get("event") == "relaunch"]


class Trainer:
    """Holds everything a run needs; `run()` trains to `config.train.total_env_steps`.

    A fresh trainer starts the run directory's logs and checkpoints anew; `resume=True` continues from the
    newest good checkpoint instead (raises checkpoint.CheckpointError where there is none). A run that has
    relaunched continues on the random stream of its newest relaunch: the relaunch events of events.jsonl
    survive every restart (`relaunched=True` starts over without a checkpoint but keeps them).
    """

    def __init__(self, config: Config, run_dir: Path, resume: bool = False, relaunched: bool = False):
        config_lib.validate(config)
        keep_freed_memory()
        self.config, self.run_dir = config, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.relaunches = relaunch_events(self.run_dir) if resume or relaunched else []
        self.stream = len(self.relaunches)
        if not resume:
            config_lib.save(config, self.run_dir / "config.json")
        self.env = make_env(config.env, config.seed, self.stream)
        self.eval_env = make_env(config.env, config.seed + EVAL_SEED_OFFSET)
        self.task_names = self.env.task_names
        t = self.env.num_tasks
        self.method = build_method(config.network, self.task_names, self.env.obs_dim, self.env.action_dim)
        key = jax.random.PRNGKey(config.seed)
        key_init, self.act_key = jax.random.split(jax.random.fold_in(key, self.stream) if self.stream else key)
        start = (shared_parameters_from(config.transfer, self.method, config.network.name)
                 if config.transfer.source and not resume else None)
        self.state = init_state(self.method, config, key_init, start)
        self.update = make_update(self.method, config)
        self.explore, self.exploit = make_policies(self.method)
        self.policy = self.method.policy(self.state.params)
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
            self.logger = RunLogger(self.run_dir, fresh=True, trackers=self._trackers(fresh=True))
            self._keep_relaunch_events()
            if self.stream:
                self._new_random_stream()

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
        return final

    def close(self) -> None:
        self.logger.close()
        self.env.close()
        self.eval_env.close()

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
            "stream": self.stream,
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
        self.logger = RunLogger(self.run_dir, fresh=False, purge_step=self.env_steps + 1,
                                trackers=self._trackers(fresh=False))
        self._keep_relaunch_events()
        if self.stream != t.get("stream", 0):
            self._new_random_stream()

    def _trackers(self, fresh: bool) -> tuple:
        if self.config.train.track != "wandb":
            return ()
        c = self.config
        return (WandbTracker(self.run_dir, fresh, c.train.wandb_project, f"{c.preset or 'custom'}/seed{c.seed}",
                             config_lib.to_dict(c)),)

    def _keep_relaunch_events(self) -> None:
        """Write back the relaunch events that cutting the logs back (or starting them anew) removed."""
        kept = len(relaunch_events(self.run_dir))
        for event in self.relaunches[kept:]:
            self.logger.event(event)

    def _new_random_stream(self) -> None:
        """After a relaunch: every random draw from here on differs from the run that exploded."""
        s, seed = self.stream, self.config.seed
        self.state = self.state.replace(key=jax.random.fold_in(self.state.key, s))
        self.act_key = jax.random.fold_in(self.act_key, s)
        self.action_rng = np.random.default_rng((seed + 1, s))
        self.replay.rng = np.random.default_rng((seed, s))

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
        if self.config.stability.relaunch:
            self._check_explosion(metrics, env_steps)
        masked = np.flatnonzero(~metrics["healthy"] | ~np.isfinite(metrics["loss/task"]))
        if metrics["finite_grad"] and not masked.size:
            return
        update = int(self.state.updates)  # the update just finished: the next is not dispatched yet
        if not metrics["finite_grad"]:
            self.logger.event({"event": "nonfinite_grad", "env_steps": env_steps, "update": update})
        mode = self.config.stability.mode
        event = {"vanilla": "nonfinite_loss", "maskout": "maskout"}.get(mode, "reset")
        if event == "reset" and not self.method.resets_task_vectors:
            event = "maskout"
        for task in masked:
            self.logger.event({"event": event, "env_steps": env_steps, "update": update,
                               "task": int(task), "task_name": self.task_names[task],
                               "loss": float(metrics["loss/task"][task])})

    def _check_explosion(self, metrics: dict, env_steps: int) -> None:
        """Stop-relaunch: a critic loss (both critics' MSE, mean over tasks) past the threshold, or not finite."""
        stab = self.config.stability
        loss = float(np.mean(metrics["loss/critic"]))
        if np.isfinite(loss) and loss <= stab.relaunch_threshold:
            return
        newest = checkpoint.checkpoint_steps(self.run_dir)
        event = {"event": "relaunch", "env_steps": env_steps, "update": int(self.state.updates),
                 "critic_loss": loss, "relaunch": self.stream + 1, "from_step": newest[-1] if newest else 0}
        if self.stream >= stab.max_relaunches:
            self.logger.event({**event, "event": "relaunch_limit"})
            raise RelaunchLimit(f"the critic loss exploded ({loss:.3g} at env step {env_steps}) after "
                                f"{self.stream} relaunches, the limit set by stability.max_relaunches")
        self.logger.event(event)
        raise Relaunch(event)

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
    """Train (or continue) a run; None where a resumed run had already finished.

    With stability.relaunch, an exploding critic sends the run back to its newest good checkpoint (or to the
    start, where there is none yet) on a new random stream, until stability.max_relaunches is spent.
    The run directory is locked throughout (paco.runlock): where another live process trains it, this one raises
    RunDirectoryBusy before reading or writing anything of the run.
    """
    with run_lock(run_dir):
        return _train_locked(config, run_dir, resume)


def _train_locked(config: Config, run_dir: Path, resume: bool) -> dict | None:
    if resume and checkpoint.newest_step(run_dir) >= config.train.total_env_steps:
        print(f"{run_dir}: already trained to {config.train.total_env_steps} env steps")
        return None
    relaunched = False
    while True:
        trainer = Trainer(config, run_dir, resume, relaunched)
        try:
            result = trainer.run()
            break
        except Relaunch as relaunch:
            event = relaunch.args[0]
            print(f"critic loss {event['critic_loss']:.3g} at env step {event['env_steps']}: relaunch "
                  f"{event['relaunch']} of at most {config.stability.max_relaunches}, "
                  f"from env step {event['from_step']}")
            resume, relaunched = bool(checkpoint.checkpoint_steps(run_dir)), True
        finally:
            trainer.close()
    print(success_table(result["success"]))
    return result
