"""The one training loop every method shares: collect → store → update → evaluate → log → checkpoint.

It trains S runs at once, the seeds of one config (`paco train --seeds 0-9`), and one run is S = 1. The seeds'
parameters carry a leading seed axis and one jitted call runs the updates of a vector step for all of them
(`sac.make_update_block`); their envs step together, in worker processes where those pay
(`paco.envs.workers`). Each seed keeps its own run directory, replay, random streams, logs and checkpoints, so a
seed trained beside others is the run it would be alone, and resumes, loads and reports like one.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections import deque
from collections.abc import Sequence
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
from paco.envs import env_dims, make_env, task_names
from paco.envs.workers import EnvWorkerError, cpu_cores, make_seed_envs, resolve_workers
from paco.evaluation import evaluate, success_table
from paco.logger import RunLogger, WandbTracker
from paco.methods import Method, build_method
from paco.nets import sample_tanh_gaussian
from paco.plots import plot_success
from paco.replay import MultiTaskReplay
from paco.run_config import seed_differences
from paco.runlock import run_lock
from paco.sac import Batch, TrainState, init_state, make_update_block
from paco.transfer import shared_parameters_from

EVAL_SEED_OFFSET = 10_000
RECENT_EPISODES = 10


def make_policies(method: Method):
    """Jitted acting: `explore` draws one action per task for every seed (each from its own key, which it
    advances), `exploit` gives one seed's deterministic actions."""

    def explore_one(policy, obs, key):
        key, draw = jax.random.split(key)
        mean, log_std = method.policy_distribution(policy, obs[:, None])
        return sample_tanh_gaussian(draw, mean, log_std)[0][:, 0], key

    @jax.jit
    def exploit(policy, obs):
        return jnp.tanh(method.policy_distribution(policy, obs[:, None])[0][:, 0])

    return jax.jit(jax.vmap(explore_one)), exploit


def time_shares(waited: dict[str, float], seconds: float) -> dict[str, float]:
    """Where `seconds` of the loop went, as fractions: each part of `Trainer.waited` (share_env, share_update)
    and the rest on the host thread (share_host)."""
    shares = {f"share_{part}": spent / seconds for part, spent in waited.items()}
    shares["share_host"] = 1 - sum(shares.values())
    return shares


def stack(trees: Sequence) -> object:
    """One tree whose leaves carry a leading axis over `trees`."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree, index: int) -> object:
    return jax.tree.map(lambda leaf: leaf[index], tree)


class Relaunch(Exception):
    """A critic loss exploded: the runs go back to their newest common checkpoint, the exploded seeds on a new
    random stream (the others replay exactly what they did). args[0]: the relaunch events, one per such seed."""


class RelaunchLimit(Exception):
    """The critic loss exploded once more after `stability.max_relaunches` relaunches: the run stops."""


def relaunch_events(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "events.jsonl"
    if not path.exists():
        return []
    return [e for e in logger_lib.read_jsonl(path) if e.get("event") == "relaunch"]


class SeedRun:
    """What one seed keeps on the host: its run directory and logs, replay, random streams and episode trackers."""

    def __init__(self, config: Config, run_dir: Path, num_tasks: int, obs_dim: int, action_dim: int,
                 keep_relaunches: bool):
        self.config, self.run_dir = config, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.relaunches = relaunch_events(self.run_dir) if keep_relaunches else []
        self.stream = len(self.relaunches)
        train, seed = config.train, config.seed
        self.replay = MultiTaskReplay(num_tasks, train.replay_capacity_per_task, obs_dim, action_dim, seed,
                                      config.env.max_episode_steps)
        self.action_rng = np.random.default_rng(seed + 1)
        self.eval_env = make_env(config.env, seed + EVAL_SEED_OFFSET)
        self.episode_return = np.zeros(num_tasks)
        self.episode_success = np.zeros(num_tasks, bool)
        self.recent_success = [deque(maxlen=RECENT_EPISODES) for _ in range(num_tasks)]
        self.recent_return = [deque(maxlen=RECENT_EPISODES) for _ in range(num_tasks)]
        self.update_metrics: list[dict] = []  # each: one block's metrics, (updates in the block, ...) arrays
        self.logger: RunLogger | None = None

    def start_logs(self, fresh: bool, purge_step: int | None = None) -> None:
        self.logger = RunLogger(self.run_dir, fresh=fresh, purge_step=purge_step, trackers=self._trackers(fresh))
        kept = len(relaunch_events(self.run_dir))  # write back what cutting the logs back (or anew) removed
        for event in self.relaunches[kept:]:
            self.logger.event(event)

    def _trackers(self, fresh: bool) -> tuple:
        c = self.config
        if c.train.track != "wandb":
            return ()
        return (WandbTracker(self.run_dir, fresh, c.train.wandb_project, f"{c.preset or 'custom'}/seed{c.seed}",
                             config_lib.to_dict(c)),)

    def record(self, obs, action, reward, next_obs, terminated, truncated, success) -> None:
        """One vector step of this seed's envs: into replay (true final obs where an episode ended) and trackers."""
        self.replay.add(obs, action, reward, next_obs, terminated, truncated)
        self.episode_return += reward
        self.episode_success |= success
        for i in np.flatnonzero(terminated | truncated):
            self.recent_success[i].append(float(self.episode_success[i]))
            self.recent_return[i].append(self.episode_return[i])
            self.episode_success[i], self.episode_return[i] = False, 0.0

    def trackers_state(self) -> dict:
        return {"episode_return": self.episode_return, "episode_success": self.episode_success,
                "recent_success": [list(d) for d in self.recent_success],
                "recent_return": [list(d) for d in self.recent_return], "update_metrics": self.update_metrics,
                "action_rng": self.action_rng.bit_generator.state, "stream": self.stream}

    def load_trackers(self, saved: dict) -> None:
        self.episode_return, self.episode_success = saved["episode_return"], saved["episode_success"]
        self.recent_success = [deque(d, maxlen=RECENT_EPISODES) for d in saved["recent_success"]]
        self.recent_return = [deque(d, maxlen=RECENT_EPISODES) for d in saved["recent_return"]]
        self.update_metrics = saved["update_metrics"]
        self.action_rng.bit_generator.state = saved["action_rng"]

    def train_record(self, env_steps: int, updates: int) -> dict:
        """The training metrics since the last record (episodes' success and return, update means)."""
        record = {"env_steps": env_steps, "updates": updates}
        finished = [s for s in self.recent_success if s]
        if finished:
            record["train/success_rate"] = float(np.mean([np.mean(s) for s in finished]))
            record["train/episode_return"] = float(np.mean([np.mean(r) for r in self.recent_return if r]))
        if self.update_metrics:
            stacked = {k: np.concatenate([m[k] for m in self.update_metrics]) for k in self.update_metrics[0]}
            for key in ("loss/critic", "loss/actor", "loss/alpha", "alpha", "entropy", "q", "grad_norm"):
                record[key] = float(np.nanmean(stacked[key]))
            record["masked_task_updates"] = int((~stacked["healthy"]).sum())
            self.update_metrics = []
        return record

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
        self.eval_env.close()


class Trainer:
    """Holds everything S runs need; `run()` trains them to `config.train.total_env_steps`.

    `config` and `run_dir` are one run's, or sequences of the seeds' (their configs equal but for the seed and the
    run directory). A fresh trainer starts the run directories' logs and checkpoints anew; `resume=True` continues
    from the newest checkpoint step that every seed has good (raises checkpoint.CheckpointError where there is
    none). A run that has relaunched continues on the random stream of its newest relaunch: the relaunch events of
    events.jsonl survive every restart (`relaunched=True` starts over without a checkpoint but keeps them).
    """

    def __init__(self, config: Config | Sequence[Config], run_dir: Path | Sequence[Path], resume: bool = False,
                 relaunched: bool = False):
        configs = [config] if isinstance(config, Config) else list(config)
        run_dirs = [run_dir] if isinstance(run_dir, (str, Path)) else list(run_dir)
        if len(configs) != len(run_dirs) or not configs:
            raise ValueError(f"one run directory per config: got {len(configs)} configs, {len(run_dirs)} dirs")
        for other in configs[1:]:
            different = seed_differences(configs[0], other)
            if different:
                raise ValueError(f"seeds trained together must share their settings: {'; '.join(different)}")
        for c in configs:
            config_lib.validate(c)
        keep_freed_memory()
        self.config = c = configs[0]
        self.workers = resolve_workers(c.train.env_workers, c.env, len(configs))
        self.task_names = task_names(c.env)
        obs_dim, action_dim = env_dims(c.env)
        t = len(self.task_names)
        self.seeds = [SeedRun(cfg, d, t, obs_dim, action_dim, resume or relaunched) for cfg, d in zip(configs, run_dirs)]
        if not resume:
            for run in self.seeds:
                config_lib.save(run.config, run.run_dir / "config.json")
        self.envs = make_seed_envs(c.env, [r.config.seed for r in self.seeds], [r.stream for r in self.seeds],
                                   self.workers)
        self.method = build_method(c.network, self.task_names, obs_dim, action_dim)
        states, act_keys = [], []
        for run in self.seeds:
            key = jax.random.PRNGKey(run.config.seed)
            key_init, act_key = jax.random.split(jax.random.fold_in(key, run.stream) if run.stream else key)
            start = (shared_parameters_from(c.transfer, self.method, c.network.name)
                     if c.transfer.source and not resume else None)
            states.append(init_state(self.method, run.config, key_init, start))
            act_keys.append(act_key)
        self.state: TrainState = stack(states)  # every leaf: (S, ...)
        self.act_keys = jnp.stack(act_keys)
        self.update = make_update_block(self.method, c)
        self.explore, self.exploit = make_policies(self.method)
        self.policy = jax.jit(jax.vmap(self.method.policy))(self.state.params)
        self.next_action: np.ndarray | None = None  # with overlap: the next step's actions, drawn before an update
        overlap = c.train.overlap_env_and_update
        self.overlap = overlap == "on" or (overlap == "auto" and (jax.default_backend() != "cpu" or cpu_cores() > 1))
        self.update_in_flight: tuple[dict, int] | None = None  # (metrics, env steps) of an update not waited for
        self.waited = {"env": 0.0, "update": 0.0}  # seconds spent stepping (or waiting for) the envs, the updates
        self.env_steps = 0
        self.checkpoint_step = 0
        self.obs = self.envs.reset()
        if resume:
            self.restore()
        else:
            for run in self.seeds:
                shutil.rmtree(checkpoint.directory(run.run_dir), ignore_errors=True)
                shutil.rmtree(run.run_dir / "tb", ignore_errors=True)
                run.start_logs(fresh=True)
            if any(run.stream for run in self.seeds):
                self._new_random_streams()

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def seed_state(self, index: int) -> TrainState:
        """Seed `index`'s TrainState, as a run trained alone would hold it."""
        return unstack(self.state, index)

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self) -> list[dict]:
        """Train to the end; the final evaluation of every seed."""
        train = self.config.train
        total = train.total_env_steps
        start, last_time, last_steps = self.env_steps, time.perf_counter(), self.env_steps
        name = self.config.preset or "train"
        bar = tqdm(total=total, initial=start, unit="step", unit_scale=True, disable=not train.progress,
                   desc=name if self.num_seeds == 1 else f"{name} ×{self.num_seeds} seeds", dynamic_ncols=True)
        final = None
        while self.env_steps < total:
            self.collect()
            if self.env_steps >= train.warmup_env_steps:
                self.learn()
            bar.update(self.num_tasks)
            if self._crossed(train.log_every_env_steps) or self.env_steps >= total:
                self.finish_update()
                now = time.perf_counter()
                rate = (self.env_steps - last_steps) / (now - last_time)
                self.log_train(rate, now - last_time)
                bar.set_postfix(steps_per_s=f"{rate * self.num_seeds:.0f}")
                last_time, last_steps = now, self.env_steps
            if self._crossed(train.eval_every_env_steps) or self.env_steps >= total:
                final = self.evaluate()
                bar.set_postfix(eval_success=" ".join(f"{r['success_rate']:.2f}" for r in final))
            if self._checkpoint_due() or self.env_steps >= total:
                self.save_checkpoint()
        bar.close()
        return final

    def close(self) -> None:
        for run in self.seeds:
            run.close()
        self.envs.close()

    def _crossed(self, every: int) -> bool:
        return every > 0 and self.env_steps // every > (self.env_steps - self.num_tasks) // every

    def _checkpoint_due(self) -> bool:
        """An interval boundary was passed since the last checkpoint, and the envs can be saved exactly now."""
        every = self.config.train.checkpoint_every_env_steps
        return (every > 0 and self.env_steps // every > self.checkpoint_step // every
                and self.envs.checkpointable())

    def collect(self) -> None:
        """One step of every seed's envs (one env per task); transitions go to each seed's replay."""
        if self.env_steps < self.config.train.warmup_env_steps:
            shape = (self.num_tasks, self.method.action_dim)
            action = np.stack([run.action_rng.uniform(-1, 1, shape) for run in self.seeds])
        elif self.next_action is not None:
            action, self.next_action = self.next_action, None
        else:
            action = self.act()
        started = time.perf_counter()
        step = self.envs.step(action)
        self.waited["env"] += time.perf_counter() - started
        for s, run in enumerate(self.seeds):
            run.record(self.obs[s], action[s], step.reward[s], step.final_obs[s], step.terminated[s],
                       step.truncated[s], step.success[s])
        self.obs = step.obs
        self.env_steps += self.num_tasks

    def learn(self) -> None:
        """The vector step's updates (`train.updates_per_vector_step`), every seed's, as one call. With overlap
        it is only started, after the next step's actions are drawn (from the policy before it): the envs step
        while it computes, and it is waited for when the next one starts. The batches are drawn before waiting."""
        n, per_task = self.config.train.updates_per_vector_step, self.config.sac.batch_per_task
        draws = [run.replay.sample_block(n, per_task) for run in self.seeds]
        batches = Batch(*(np.stack(field, axis=1) for field in zip(*draws)))  # (n, S, T, B, ...)
        self.finish_update()
        if self.overlap:  # drawn before the update is queued, so that acting never waits for it
            self.next_action = self.act()
        self.state, self.policy, metrics = self.update(self.state, batches)
        self.update_in_flight = metrics, self.env_steps
        if not self.overlap:
            self.finish_update()

    def act(self) -> np.ndarray:
        """Every seed's exploration actions for `obs`, from the newest policy whose update has finished."""
        action, self.act_keys = self.explore(self.policy, self.obs, self.act_keys)
        return np.asarray(action)

    def finish_update(self) -> None:
        """Wait for the updates in flight, if any; record their metrics and report masked tasks and explosions."""
        if self.update_in_flight is None:
            return
        started = time.perf_counter()
        (metrics, env_steps), self.update_in_flight = jax.device_get(self.update_in_flight), None
        self.waited["update"] += time.perf_counter() - started
        n = metrics["finite_grad"].shape[0]
        updates = np.asarray(self.state.updates) - n  # per seed, before the block (the next is not dispatched)
        relaunches = []
        for s, run in enumerate(self.seeds):
            seed_metrics = {k: v[:, s] for k, v in metrics.items()}
            run.update_metrics.append(seed_metrics)
            if self.config.stability.relaunch:
                event = self._explosion(run, seed_metrics, env_steps, int(updates[s]))
                if event:
                    relaunches.append(event)
            self._report_masked(run, seed_metrics, env_steps, int(updates[s]))
        if relaunches:
            raise Relaunch(relaunches)

    def _report_masked(self, run: SeedRun, metrics: dict, env_steps: int, before: int) -> None:
        """Events for non-finite gradients and for the tasks maskout (or Reset) dropped, update by update."""
        masked = ~metrics["healthy"] | ~np.isfinite(metrics["loss/task"])  # (n, T)
        if metrics["finite_grad"].all() and not masked.any():
            return
        mode = self.config.stability.mode
        event = {"vanilla": "nonfinite_loss", "maskout": "maskout"}.get(mode, "reset")
        if event == "reset" and not self.method.resets_task_vectors:
            event = "maskout"
        for j in range(len(masked)):
            update = before + j + 1
            if not metrics["finite_grad"][j]:
                run.logger.event({"event": "nonfinite_grad", "env_steps": env_steps, "update": update})
            for task in np.flatnonzero(masked[j]):
                run.logger.event({"event": event, "env_steps": env_steps, "update": update, "task": int(task),
                                  "task_name": self.task_names[task], "loss": float(metrics["loss/task"][j, task])})

    def _explosion(self, run: SeedRun, metrics: dict, env_steps: int, before: int) -> dict | None:
        """Stop-relaunch: the relaunch event of a critic loss (both critics' MSE, mean over tasks) past the
        threshold or not finite in one of the block's updates; None where there is none."""
        stab = self.config.stability
        losses = np.mean(metrics["loss/critic"], axis=-1)
        exploded = np.flatnonzero(~np.isfinite(losses) | (losses > stab.relaunch_threshold))
        if not exploded.size:
            return None
        j = int(exploded[0])
        loss = float(losses[j])
        newest = checkpoint.checkpoint_steps(run.run_dir)
        event = {"event": "relaunch", "env_steps": env_steps, "update": before + j + 1, "critic_loss": loss,
                 "relaunch": run.stream + 1, "from_step": newest[-1] if newest else 0}
        if run.stream >= stab.max_relaunches:
            run.logger.event({**event, "event": "relaunch_limit"})
            where = f"{run.run_dir}: " if self.num_seeds > 1 else ""
            raise RelaunchLimit(f"{where}the critic loss exploded ({loss:.3g} at env step {env_steps}) after "
                                f"{run.stream} relaunches, the limit set by stability.max_relaunches")
        run.logger.event(event)
        return {**event, "run_dir": str(run.run_dir)}

    def log_train(self, env_steps_per_second: float, seconds: float) -> None:
        """Every seed's training metrics; the loop's speed (env steps per second of each seed) and where its
        `seconds` since the last record went: stepping the envs (or waiting for their workers), waiting for
        updates, and the rest (acting, replay, logging, evaluation, checkpoints) on this process's thread."""
        self.finish_update()
        updates = np.asarray(self.state.updates)
        shares = time_shares(self.waited, seconds)
        self.waited = dict.fromkeys(self.waited, 0.0)
        for s, run in enumerate(self.seeds):
            run.logger.log(run.train_record(self.env_steps, int(updates[s])))
            run.logger.timing({"env_steps": self.env_steps, "env_steps_per_second": env_steps_per_second,
                               "seeds_in_process": self.num_seeds, **shares})

    def evaluate(self) -> list[dict]:
        """The deterministic policy of every seed on its own evaluation envs."""
        results = []
        updates = np.asarray(self.state.updates)
        for s, run in enumerate(self.seeds):
            policy = unstack(self.policy, s)
            result = evaluate(run.eval_env, lambda obs, p=policy: np.asarray(self.exploit(p, obs)),
                              self.config.train.eval_episodes)
            record = {"env_steps": self.env_steps, "updates": int(updates[s]),
                      "eval/success_rate": result["success_rate"],
                      "eval/return": float(np.mean(list(result["return"].values())))}
            record.update({f"eval/success/{name}": rate for name, rate in result["success"].items()})
            run.logger.log(record)
            plot_success(run.run_dir)
            results.append(result)
        return results

    # -- checkpoints -------------------------------------------------------------------------------------
    def _state_tree(self, state: TrainState, policy) -> dict:
        return {"target_critic": state.target_critic, "opt_state": state.opt_state, "key": state.key,
                "updates": state.updates, "policy": policy}

    def save_checkpoint(self) -> list[Path]:
        """Every seed's checkpoint at this step: all `restore` needs to continue exactly (paco/checkpoint.py)."""
        # With overlap, the envs act with the newest policy from here on, as a resumed run will (the actions
        # drawn ahead are dropped; their draw advanced the saved keys in both runs alike).
        self.finish_update()
        self.next_action = None
        state, policy, act_keys = jax.device_get((self.state, self.policy, self.act_keys))
        env_states = self.envs.get_state()
        paths = []
        for s, run in enumerate(self.seeds):
            trainer = {"env_steps": self.env_steps, "obs": self.obs[s], "act_key": act_keys[s],
                       "env": env_states[s], "eval_env": run.eval_env.get_state(), "logs": run.logger.offsets(),
                       **run.trackers_state()}
            snapshot = checkpoint.Snapshot(self.env_steps, unstack(state.params, s),
                                           self._state_tree(unstack(state, s), unstack(policy, s)), run.replay,
                                           trainer)
            paths.append(checkpoint.save(run.run_dir, snapshot, self.config.train.keep_checkpoints))
        self.checkpoint_step = self.env_steps
        return paths

    def _load_common_step(self) -> list[checkpoint.Snapshot]:
        """Every seed's checkpoint at the newest step all of them have good (S = 1: the newest good one)."""
        template = self._state_tree(self.seed_state(0), unstack(self.policy, 0))
        steps = sorted(set.intersection(*(set(checkpoint.checkpoint_steps(r.run_dir)) for r in self.seeds)))
        errors = []
        for step in reversed(steps):
            snapshots = []
            try:
                for run in self.seeds:
                    snapshots.append(checkpoint.load(run.run_dir, template, run.replay, step))
            except checkpoint.FormatVersionError:
                raise
            except checkpoint.CheckpointError as error:
                errors.append(str(error) if self.num_seeds == 1 else f"{run.run_dir}: {error}")
                continue
            for error in errors:
                print(f"paco: warning: {error}; using {checkpoint.step_name(step)}", file=sys.stderr)
            return snapshots
        where = ", ".join(str(r.run_dir) for r in self.seeds)
        if not steps:
            raise checkpoint.CheckpointError(f"no checkpoint {'in' if self.num_seeds == 1 else 'common to'} {where}")
        raise checkpoint.CheckpointError(f"no good checkpoint in {where}: {'; '.join(errors)}")

    def restore(self) -> None:
        """Continue from the newest good common checkpoint: state, replay, every RNG, envs, trackers; logs cut back."""
        snapshots = self._load_common_step()
        states, policies, act_keys, env_states = [], [], [], []
        for run, snapshot in zip(self.seeds, snapshots):
            try:
                params = flax.serialization.from_state_dict(self.seed_state(0).params, snapshot.params)
            except (KeyError, ValueError) as error:
                raise checkpoint.CheckpointError(f"checkpoint at step {snapshot.step} does not fit this run's "
                                                 f"networks: {error}") from None
            saved = jax.tree.map(jnp.asarray, snapshot.state)
            states.append(TrainState(jax.tree.map(jnp.asarray, params), saved["target_critic"], saved["opt_state"],
                                     saved["key"], saved["updates"]))
            policies.append(saved["policy"])
            t = snapshot.trainer
            run.load_trackers(t)
            act_keys.append(jnp.asarray(t["act_key"]))
            env_states.append(t["env"])
            run.eval_env.set_state(t["eval_env"])
            for step in checkpoint.checkpoint_steps(run.run_dir):  # newer ones are rewritten
                if step > snapshot.step:
                    checkpoint.remove(run.run_dir, step)
            try:
                logger_lib.truncate(run.run_dir, t["logs"])
            except ValueError as error:
                raise checkpoint.CheckpointError(str(error)) from None
        self.state, self.policy, self.act_keys = stack(states), stack(policies), jnp.stack(act_keys)
        self.next_action = None
        self.env_steps = self.checkpoint_step = snapshots[0].step
        self.obs = np.stack([s.trainer["obs"] for s in snapshots])
        try:
            self.envs.set_state(env_states)
        except EnvWorkerError as error:
            raise checkpoint.CheckpointError(f"checkpoint at step {self.env_steps} does not fit this run's "
                                             f"envs: {error}") from None
        for run, snapshot in zip(self.seeds, snapshots):
            run.start_logs(fresh=False, purge_step=self.env_steps + 1)
        if any(run.stream != s.trainer.get("stream", 0) for run, s in zip(self.seeds, snapshots)):
            self._new_random_streams([s.trainer.get("stream", 0) for s in snapshots])

    def _new_random_streams(self, saved: Sequence[int] | None = None) -> None:
        """After a relaunch: every random draw of a relaunched seed differs from the run that exploded; the other
        seeds (whose stream is the one `saved` holds) draw as before."""
        keys, act_keys = list(self.state.key), list(self.act_keys)
        for s, run in enumerate(self.seeds):
            if run.stream == (saved[s] if saved is not None else 0):
                continue
            seed, stream = run.config.seed, run.stream
            keys[s], act_keys[s] = jax.random.fold_in(keys[s], stream), jax.random.fold_in(act_keys[s], stream)
            run.action_rng = np.random.default_rng((seed + 1, stream))
            run.replay.rng = np.random.default_rng((seed, stream))
        self.state = self.state.replace(key=jnp.stack(keys))
        self.act_keys = jnp.stack(act_keys)


def train(config: Config, run_dir: Path, resume: bool = False) -> dict | None:
    """Train (or continue) one run; None where a resumed run had already finished."""
    return train_seeds([config], [run_dir], resume)[0]


def train_seeds(configs: Sequence[Config], run_dirs: Sequence[Path], resume: bool = False) -> list[dict | None]:
    """Train (or continue) the seeds of one config in one process; each seed's final evaluation, None for a
    resumed seed that had already finished.

    With stability.relaunch, an exploding critic sends the runs back to their newest common checkpoint (or to
    the start, where there is none yet), the exploded seeds on a new random stream, until
    stability.max_relaunches is spent. Every run directory is locked throughout (paco.runlock): where another live
    process trains one, this raises RunDirectoryBusy before reading or writing anything of the runs.
    """
    with contextlib.ExitStack() as locks:
        for run_dir in run_dirs:
            locks.enter_context(run_lock(run_dir))
        return _train_locked(list(configs), [Path(d) for d in run_dirs], resume)


def _train_locked(configs: list[Config], run_dirs: list[Path], resume: bool) -> list[dict | None]:
    results: list[dict | None] = [None] * len(configs)
    todo = list(range(len(configs)))
    if resume:
        todo = [i for i in todo if checkpoint.newest_step(run_dirs[i]) < configs[i].train.total_env_steps]
        for i in sorted(set(range(len(configs))) - set(todo)):
            print(f"{run_dirs[i]}: already trained to {configs[i].train.total_env_steps} env steps")
        if not todo:
            return results
    chosen_configs, chosen_dirs = [configs[i] for i in todo], [run_dirs[i] for i in todo]
    relaunched = False
    while True:
        trainer = Trainer(chosen_configs, chosen_dirs, resume, relaunched)
        try:
            final = trainer.run()
            break
        except Relaunch as relaunch:
            for event in relaunch.args[0]:
                print(f"{event['run_dir']}: critic loss {event['critic_loss']:.3g} at env step {event['env_steps']}: "
                      f"relaunch {event['relaunch']} of at most {chosen_configs[0].stability.max_relaunches}, "
                      f"from env step {event['from_step']}")
            steps = [set(checkpoint.checkpoint_steps(d)) for d in chosen_dirs]
            resume, relaunched = bool(set.intersection(*steps)), True
        finally:
            trainer.close()
    for i, result, run_dir in zip(todo, final, chosen_dirs):
        if len(chosen_dirs) > 1:
            print(f"{run_dir}:")
        print(success_table(result["success"]))
        results[i] = result
    return results
