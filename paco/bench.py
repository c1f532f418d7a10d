"""`paco bench`: how close one update, acting and the training loop come to this machine's limits.

Every figure is measured in one run on the current machine (CPU or accelerator, whichever JAX picks):
jitted work is compiled first, then timed with `jax.block_until_ready`; the median of the repeats is kept.
Update throughput is the analytical matmul work of the update (`update_matmul_flops`) over its time, set
against the peak rate of one large float32 matmul.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from paco import config as config_lib
from paco import presets
from paco.allocator import keep_freed_memory
from paco.config import Config
from paco.envs import METAWORLD_ACTION_DIM, METAWORLD_OBS_DIM, task_names
from paco.methods import build_method
from paco.methods.compositional import Compositional
from paco.nets import ComposedMLP, dense
from paco.sac import Batch, init_state, make_update

WARMUP_ROUNDS = 3
PROCESS_TIMEOUT_S = 1800  # a one-seed process of the loop figures that says nothing for this long has failed
# What `--methods` can time: the MT10-rand preset of each row of Table 1 (and beyond), at the shapes given.
BENCH_PRESETS = {"mtsac": "mt10-rand-mtsac", "mhsac": "mt10-rand-mhsac", "paco": "mt10-rand-paco",
                 "film": "mt10-rand-film", "softmod": "mt10-rand-softmod", "care": "mt10-rand-care",
                 "pcgrad": "mt10-rand-pcgrad", "moore": "mt10-rand-moore", "gradnorm": "mt10-rand-gradnorm",
                 "mhsac-wide": "mt10-rand-mhsac-wide"}


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn()` (its outputs waited for); a first call compiles and is not timed."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# -- peak matmul rate -----------------------------------------------------------------------------------
def peak_matmul(size: int) -> Callable[[], jax.Array]:
    """A call of one (size × size) @ (size × size) float32 matmul: 2·size³ FLOPs."""
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (size, size), jnp.float32)
    b = jax.random.normal(kb, (size, size), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    return lambda: matmul(a, b)


# -- analytical matmul work of one update ---------------------------------------------------------------
def _layers(mlp: ComposedMLP) -> list[tuple[int, int, bool]]:
    return [(n_in, n_out, c) for n_in, n_out, c in zip(mlp.sizes[:-1], mlp.sizes[1:], mlp.composed)]


def update_matmul_flops(networks: Compositional, batch_per_task: int) -> dict[str, float]:
    """Matmul FLOPs (2 per multiply-add) of one `make_update` step, by part; kernels only, biases ignored.

    With N = tasks · batch rows, a dense layer (in → out) costs 2·N·in·out for its forward pass, the same
    again for its kernel gradient (x^T dy) and again for its input gradient (dy W^T). The update runs:

      next actor on s'            forward                                  (targets: no gradient)
      twin target critics on s'   forward
      twin critics on (s, a)      forward + kernel grads + input grads of layers ≥ 2 (data feeds layer 1)
      actor on s                  forward + kernel grads + input grads of layers ≥ 2
      twin frozen critics on π(s) forward + input grads of all layers; layer 1 only for its action columns

    A composed layer (K slices, one w per task) is applied as one batched matmul of the same cost, plus its
    composition W_τ = Σ_k w_τk Φ_k: 2·T·K·in·out forward, and 2·T·K·in·out for each of dΦ and (w learned) dw.
    Compositions happen for the actor and the twin critics (forward + backward; their frozen copies hold the
    same values and are composed once), for the twin target critics (forward) and for the new policy
    weights returned by the update (forward).
    """
    t, k = networks.num_tasks, networks.arch.num_components
    n = t * batch_per_task
    actor, critic = _layers(networks.actor), _layers(networks.critic)
    action_dim = networks.action_dim

    def forward(layers):
        return sum(2 * n * i * o for i, o, _ in layers)

    def kernel_grads(layers):
        return sum(2 * n * i * o for i, o, _ in layers)

    def input_grads(layers, first_layer_columns=0):
        (_, o0, _), rest = layers[0], layers[1:]
        return 2 * n * first_layer_columns * o0 + sum(2 * n * i * o for i, o, _ in rest)

    def compose(layers):
        return sum(2 * t * k * i * o for i, o, c in layers if c)

    compose_backward = 2 if networks.arch.w_trainable else 1
    parts = {
        "next_actor": forward(actor),
        "target_critics": 2 * forward(critic),
        "critics": 2 * (forward(critic) + kernel_grads(critic) + input_grads(critic)),
        "actor": forward(actor) + kernel_grads(actor) + input_grads(actor),
        "actor_through_critics": 2 * (forward(critic) + input_grads(critic, first_layer_columns=action_dim)),
        "compose": (compose(actor) * (1 + compose_backward) + 2 * compose(critic) * (1 + compose_backward)
                    + 2 * compose(critic) + compose(actor)),
    }
    parts["total"] = sum(parts.values())
    return parts


# -- the output-mixing strategy, for comparison --------------------------------------------------------
class OutputMixingMLP(ComposedMLP):
    """The PaCo layer as older implementations run it: every sample goes through all K slices and the
    K outputs are mixed with w. Same function as `ComposedMLP` (Σ_k w_k(xΦ_k + b_k) = x Σ_k w_kΦ_k + Σ_k w_k b_k),
    K times the matmul work."""

    def __call__(self, x: jax.Array, w: jax.Array | None) -> jax.Array:
        for i, (layer, composed) in enumerate(zip(self.layers, self.composed)):
            if composed:
                outputs = jnp.einsum("gbi,kio->gbko", x, layer.kernel) + layer.bias
                x = jnp.einsum("gbko,gk->gbo", outputs, w)
            else:
                x = dense(layer.compose(None), x)
            if i < len(self.layers) - 1:
                x = jax.nn.relu(x)
        return x


def output_mixing(networks: Compositional) -> Compositional:
    def mixing(mlp: ComposedMLP) -> OutputMixingMLP:
        return OutputMixingMLP(mlp.sizes, mlp.composed, mlp.num_components)

    return dataclasses.replace(networks, actor=mixing(networks.actor), critic=mixing(networks.critic))


# -- one update -----------------------------------------------------------------------------------------
def synthetic_batch(tasks: int, batch_per_task: int, obs_dim: int, action_dim: int) -> Batch:
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    return Batch(jax.random.normal(keys[0], (tasks, batch_per_task, obs_dim)),
                 jax.random.uniform(keys[1], (tasks, batch_per_task, action_dim), minval=-1, maxval=1),
                 jax.random.normal(keys[2], (tasks, batch_per_task)),
                 jax.random.normal(keys[3], (tasks, batch_per_task, obs_dim)),
                 jnp.zeros((tasks, batch_per_task)))


def update_stepper(method, config: Config) -> Callable[[], object]:
    """A call that runs one full update (critics, actor, temperatures, targets) on a fixed batch."""
    batch = synthetic_batch(method.num_tasks, config.sac.batch_per_task, method.obs_dim, method.action_dim)
    update = make_update(method, config)
    state = init_state(method, config, jax.random.PRNGKey(0))

    def step():
        nonlocal state
        state, policy, metrics = update(state, batch)
        return state, policy, metrics

    return step


def interleaved_seconds(steps: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median time of each call, timed round-robin so that a change in the machine's load (other
    processes) falls on all of them alike and their ratios (to each other, to the peak) stay meaningful.
    `WARMUP_ROUNDS` untimed rounds first: compilation, and the process's heap growing to what the calls need."""
    for _ in range(WARMUP_ROUNDS):
        for step in steps.values():
            jax.block_until_ready(step())
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(step())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_config(method: str, options: argparse.Namespace) -> Config:
    """The method's MT10-rand preset at the shapes of the options (hidden widths and K where it has them, when
    given; the wide multi-head keeps its widths unless --hidden is given)."""
    base = presets.get(BENCH_PRESETS[method])
    fields = {f.name for f in dataclasses.fields(base.network)}
    shapes = {"num_components": options.components}
    if options.hidden:
        shapes.update(hidden=tuple(options.hidden), critic_hidden=())
    return config_lib.replace(base, network={k: v for k, v in shapes.items() if k in fields},
                              sac={"batch_per_task": options.batch_per_task})


def bench_method(config: Config, tasks: int):
    """The config's method for the first `tasks` tasks of MT50 (CARE reads their description embeddings)."""
    names = task_names(config_lib.replace(config, env={"suite": "MT50"}).env)[:tasks]
    return build_method(config.network, names, METAWORLD_OBS_DIM, METAWORLD_ACTION_DIM)


# -- acting ---------------------------------------------------------------------------------------------
def act_seconds(config: Config, tasks: int, repeats: int) -> float:
    """One exploration action for every task's env, from weights composed once, back on the host."""
    from paco.trainer import make_policies

    method = bench_method(config, tasks)
    params = init_state(method, config, jax.random.PRNGKey(0)).params
    policy = jax.tree.map(lambda leaf: leaf[None], method.policy(params))  # one seed
    explore, _ = make_policies(method)
    obs = np.random.default_rng(0).normal(size=(1, tasks, METAWORLD_OBS_DIM)).astype(np.float32)
    key = jax.random.PRNGKey(0)[None]
    calls = 50

    def act_many():
        for _ in range(calls):
            action = np.asarray(explore(policy, obs, key)[0])
        return action

    return median_seconds(act_many, repeats) / calls


# -- envs and the training loop -------------------------------------------------------------------------
def env_seconds(config: Config, vector_steps: int, repeats: int) -> float:
    """Median seconds of one vector step of the suite's env (one seed's) under random actions."""
    from paco.envs import make_env

    env = make_env(config.env, config.seed + 1)
    try:
        env.reset()
        actions = np.random.default_rng(0).uniform(-1, 1, (vector_steps, env.num_tasks, env.action_dim))

        def steps():
            for action in actions:
                env.step(action)

        return median_seconds(steps, repeats) / vector_steps
    finally:
        env.close()


def loop_seconds(trainer, vector_steps: int) -> tuple[float, dict[str, float]]:
    """Seconds of `vector_steps` steps of the real loop (collect, then the updates), and the seconds of them spent
    stepping (or waiting for) the envs and waiting for the updates."""
    trainer.waited = dict.fromkeys(trainer.waited, 0.0)
    start = time.perf_counter()
    for _ in range(vector_steps):
        trainer.collect()
        trainer.learn()
    trainer.finish_update()
    return time.perf_counter() - start, dict(trainer.waited)


def warmed_trainer(config: Config, seeds, root: str):
    """A Trainer of `seeds` past its warm-up, its update compiled and the heap grown (`WARMUP_ROUNDS` steps)."""
    from paco.trainer import Trainer

    configs = [dataclasses.replace(config, seed=seed) for seed in seeds]
    trainer = Trainer(configs, [Path(root) / f"seed{seed}" for seed in seeds])
    while trainer.env_steps < config.train.warmup_env_steps:
        trainer.collect()
    loop_seconds(trainer, WARMUP_ROUNDS)
    return trainer


def seeds_together(config: Config, num_seeds: int, vector_steps: int) -> dict[str, float]:
    """`num_seeds` seeds in one process: the process's env steps/s and the shares of a vector step."""
    from paco.trainer import time_shares

    with tempfile.TemporaryDirectory() as root:
        trainer = warmed_trainer(config, range(num_seeds), root)
        try:
            seconds, waited = loop_seconds(trainer, vector_steps)
            env_steps = vector_steps * trainer.num_tasks * num_seeds
        finally:
            trainer.close()
    return {"env_steps_per_s": env_steps / seconds, **time_shares(waited, seconds)}


def _one_seed_process(config: Config, seed: int, vector_steps: int, barrier, results) -> None:
    """A process of `seeds_apart`: one seed's loop, timed from when every process is ready."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # several processes share an accelerator
    with tempfile.TemporaryDirectory() as root:
        trainer = warmed_trainer(config, [seed], root)
        try:
            barrier.wait()
            seconds, _ = loop_seconds(trainer, vector_steps)
            results.put((vector_steps * trainer.num_tasks, seconds))
        finally:
            trainer.close()


def seeds_apart(config: Config, num_seeds: int, vector_steps: int) -> float:
    """`num_seeds` processes of one seed each, started together: their env steps over the slowest one's seconds."""
    context = multiprocessing.get_context("spawn")  # never fork a process whose JAX threads have started
    barrier, results = context.Barrier(num_seeds), context.Queue()
    processes = [context.Process(target=_one_seed_process, args=(config, seed, vector_steps, barrier, results))
                 for seed in range(num_seeds)]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=PROCESS_TIMEOUT_S) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=PROCESS_TIMEOUT_S)
            if process.is_alive():
                process.kill()
    return sum(steps for steps, _ in outcomes) / max(seconds for _, seconds in outcomes)


# -- the command ----------------------------------------------------------------------------------------
def run(options: argparse.Namespace) -> dict[str, float]:
    """Every figure of `paco bench`, printed one per line as it is measured; returned as a flat dict."""
    results: dict[str, float] = {}
    keep_freed_memory()  # as in training: every figure is taken with the allocator the trainer uses

    def report(key: str, value: float, text: str) -> None:
        results[key] = float(value)
        print(text, flush=True)

    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {len(jax.devices())} device(s)")
    print(f"shapes: {options.tasks} tasks x {options.batch_per_task} per task, hidden "
          f"{'x'.join(map(str, options.hidden or (400, 400, 400)))}, K={options.components}, "
          f"obs {METAWORLD_OBS_DIM}, "
          f"action {METAWORLD_ACTION_DIM}; median of {options.repeats}", flush=True)
    size = options.matmul_size or (2048 if jax.default_backend() == "cpu" else 8192)
    methods = list(dict.fromkeys(["mtsac", "paco", *options.methods]))
    configs = {method: bench_config(method, options) for method in methods}
    networks = {method: bench_method(c, options.tasks) for method, c in configs.items()}
    steps = {method: update_stepper(networks[method], configs[method]) for method in configs}
    steps["mixing"] = update_stepper(output_mixing(networks["paco"]), configs["paco"])
    steps["peak"] = peak_matmul(size)
    seconds = interleaved_seconds(steps, options.repeats)
    peak = 2 * size**3 / seconds["peak"] / 1e9
    report("peak_matmul_gflops", peak, f"peak matmul ({size}x{size} float32):     {peak:9.1f} GFLOP/s")
    for method, label in (("mtsac", "MT-SAC"), ("paco", "PaCo")):
        flops = update_matmul_flops(networks[method], options.batch_per_task)["total"]
        rate = flops / seconds[method] / 1e9
        results[f"update_{method}_gflop"] = flops / 1e9
        report(f"update_{method}_ms", 1e3 * seconds[method],
               f"update {label + ':':<8}                  {1e3 * seconds[method]:9.2f} ms  "
               f"({flops / 1e9:.2f} GFLOP of matmuls)")
        report(f"update_{method}_gflops", rate, f"  achieved:                       {rate:9.1f} GFLOP/s")
        report(f"update_{method}_pct_peak", 100 * rate / peak,
               f"  of peak:                        {100 * rate / peak:9.1f} %")
    ratio = seconds["paco"] / seconds["mtsac"]
    report("paco_over_mtsac", ratio, f"PaCo / MT-SAC update time:        {ratio:9.2f}")
    for method in methods[2:]:
        ratio = seconds[method] / seconds["mtsac"]
        report(f"update_{method}_ms", 1e3 * seconds[method],
               f"update {BENCH_PRESETS[method] + ':':<26}{1e3 * seconds[method]:9.2f} ms  ({ratio:.2f} x MT-SAC)")
        report(f"{method}_over_mtsac", ratio, f"  / MT-SAC update time:           {ratio:9.2f}")

    mixing = seconds["mixing"]
    report("update_paco_output_mixing_ms", 1e3 * mixing,
           f"update PaCo, output-mixing:       {1e3 * mixing:9.2f} ms")
    report("composed_speedup_over_output_mixing", mixing / seconds["paco"],
           f"  composed is faster by:          {mixing / seconds['paco']:9.2f} x")

    act = act_seconds(configs["paco"], options.tasks, options.repeats)
    report("act_ms", 1e3 * act, f"act, {options.tasks} envs (PaCo explore):     {1e3 * act:9.3f} ms")

    loop_config = config_lib.replace(configs["paco"], env={"suite": options.suite},
                                     train={"warmup_env_steps": 1, "progress": False})
    env = env_seconds(loop_config, options.vector_steps, options.repeats)
    tasks = len(task_names(loop_config.env))
    report("env_steps_per_s", tasks / env, f"env steps/s, {options.suite} stepping alone: {tasks / env:9.1f}")
    print(f"training loop, PaCo on {options.suite}, {options.vector_steps} vector steps, env workers "
          f"{loop_config.train.env_workers}:", flush=True)
    for s in options.loop_seeds:
        together = seeds_together(loop_config, s, options.vector_steps)
        label = f"  {s} seed{'s' if s > 1 else ''} in one process:"
        report(f"loop_s{s}_env_steps_per_s", together["env_steps_per_s"],
               f"{label:<34}{together['env_steps_per_s']:9.1f} env steps/s  "
               f"(env {100 * together['share_env']:.0f}%, update {100 * together['share_update']:.0f}%, "
               f"rest {100 * together['share_host']:.0f}%)")
        for part in ("env", "update", "host"):
            results[f"loop_s{s}_share_{part}"] = together[f"share_{part}"]
        if s > 1:
            apart = seeds_apart(loop_config, s, options.vector_steps)
            label = f"  {s} processes of one seed:"
            report(f"apart_s{s}_env_steps_per_s", apart, f"{label:<34}{apart:9.1f} env steps/s")
            label = f"  one process over {s} processes:"
            report(f"loop_s{s}_over_apart", together["env_steps_per_s"] / apart,
                   f"{label:<34}{together['env_steps_per_s'] / apart:9.2f} x")
    return results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paco bench", description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="FILE", help="also write the figures as one JSON object")
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--batch-per-task", type=int, default=128)
    p.add_argument("--hidden", type=int, nargs="+", metavar="WIDTH",
                   help="hidden widths of every method (default: each preset's, 400 400 400 but for the wide "
                        "multi-head); --hidden 32 gives 3 layers of 32")
    p.add_argument("--components", type=int, default=5, help="PaCo's K")
    p.add_argument("--repeats", type=int, default=10, help="timed repeats per figure (the median is kept)")
    p.add_argument("--suite", default="MT10", help="env suite of the env and training-loop figures")
    p.add_argument("--vector-steps", type=int, default=100,
                   help="vector-env steps timed for env stepping and for the training loop")
    p.add_argument("--loop-seeds", default="1,2,4", metavar="S,...",
                   help="seeds trained in one process for the loop figures, each beside as many one-seed processes")
    p.add_argument("--matmul-size", type=int, default=0, help="side of the peak matmul (default 2048 CPU, 8192 else)")
    p.add_argument("--methods", default="", metavar="NAME,...",
                   help=f"also time these methods' updates against MT-SAC's: 'all', or from "
                        f"{', '.join(BENCH_PRESETS)}")
    return p


def check(options: argparse.Namespace) -> None:
    """Raise ValueError naming the first option that cannot work, before anything is built."""
    positive = {"--tasks": options.tasks, "--batch-per-task": options.batch_per_task, "--repeats": options.repeats,
                "--components": options.components, "--vector-steps": options.vector_steps,
                "--hidden": min(options.hidden or [1]), "--loop-seeds": min(options.loop_seeds)}
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be positive, got {value}")
    if options.matmul_size < 0:
        raise ValueError(f"--matmul-size must not be negative, got {options.matmul_size}")
    if options.tasks > 50:
        raise ValueError(f"--tasks is at most 50 (the MT50 tasks give the shapes), got {options.tasks}")
    unknown = [m for m in options.methods if m not in BENCH_PRESETS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r} for --methods; known: all, {', '.join(BENCH_PRESETS)}")
    task_names(config_lib.replace(presets.get("pointmass-paco"), env={"suite": options.suite}).env)


def loop_seeds(text: str) -> list[int]:
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise ValueError(f"--loop-seeds takes numbers of seeds separated by commas (1,2,4), got {text!r}") from None


def main(args: list[str]) -> None:
    """`paco bench`; a bad option raises ValueError with a one-line message."""
    options = parser().parse_args(args)
    if options.hidden and len(options.hidden) == 1:
        options.hidden = options.hidden * 3
    names = [m.strip() for m in options.methods.split(",") if m.strip()]
    options.methods = list(BENCH_PRESETS) if names == ["all"] else names
    options.loop_seeds = loop_seeds(options.loop_seeds)
    check(options)
    results = run(options)
    if options.json:
        with open(options.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {options.json}")
