"""`paco explore`: the behaviours between the tasks in a PaCo run's w-space (the paper's Figure 3b).

Each sampled w is given to every task at once (every row of params["w"] set to it; PaCo's actor reads no task
one-hot, so the rows differ only in w) and the method composes the policy from it as in training. A K = 2
unit-norm run is sampled at N angles evenly spaced on the unit circle; any other run at N convex combinations of
its tasks' learned w (uniform Dirichlet weights). Every task's own learned w is rolled out beside them for
reference. Each w is scored by the paper's protocol (deterministic policy, success if it fired at any step) on
envs seeded as `paco evaluate` seeds them, so every w meets the same goals and a task's own w reproduces its
`paco evaluate` score. Meta-World suites are filmed with MuJoCo's offscreen renderer: one GIF or MP4 per
(w, task), of the first episode.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import imageio.v3 as iio
import jax.numpy as jnp
import numpy as np

from paco.agent import Agent
from paco.analysis.wspace import LearnedW, on_unit_circle, restore_learned_w
from paco.checkpoint import CheckpointError
from paco.envs import MultiTaskEnv, Transition, make_env
from paco.envs.metaworld import MetaWorldMultiTask
from paco.evaluation import SCORE_SEED_OFFSET, evaluate

VIDEO_FORMATS = ("gif", "mp4", "none")
GL_BACKENDS = ("egl", "osmesa", "glfw")  # what gymnasium's offscreen viewer accepts in MUJOCO_GL
SHEET_FRAMES = 6  # frames per w in explore-<task>.png
VIDEO_FPS = 25  # GIF delays are whole centiseconds and viewers slow down delays under 20 ms; 25 fps suits both
CAMERA = {"distance": 1.6, "elevation": -25.0, "azimuth": 155.0, "lookat": (0.0, 0.7, 0.1)}  # table, arm, goal
TABLE_CSV, TABLE_JSON = "explore.csv", "explore.json"


@dataclass(frozen=True)
class ExploreSettings:
    tasks: tuple[str, ...] = ()
    """Tasks to roll out on (names with or without '-v3'); empty: every task of the run."""
    points: int = 8
    """Sampled w: angles on the unit circle, or convex combinations of the learned w."""
    episodes: int = 10
    """Deterministic episodes per (w, task)."""
    video: Literal["gif", "mp4", "none"] = "mp4"
    """MP4 by default: a 150-step episode at 320x320 is tens of kilobytes, as a GIF megabytes."""
    seed: int = 0
    """Seeds the Dirichlet weights; the envs are seeded as `paco evaluate` seeds them, plus this."""
    checkpoint: int | None = None
    width: int = 320
    height: int = 320

    def __post_init__(self):
        for name in ("points", "episodes", "width", "height"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.video not in VIDEO_FORMATS:
            raise ValueError(f"unknown video format {self.video!r}; known: {', '.join(VIDEO_FORMATS)}")
        if self.seed < 0:
            raise ValueError(f"--seed must not be negative, got {self.seed}")


@dataclass(frozen=True)
class Probe:
    """One w, given to every task."""

    name: str
    """How the table and the video files name it (angle or w, so that a file says which w it shows)."""
    kind: Literal["circle", "mix", "learned"]
    row: np.ndarray
    """(K,): what every row of params["w"] is set to (a task's own w: its row as trained, bit for bit)."""
    w: np.ndarray
    """(K,): the w the policy uses, `row` as the method projects it."""
    angle: float | None = None
    """Degrees, for w on the unit circle."""
    weights: np.ndarray | None = None
    """Convex weights over the run's tasks' w (kind "mix")."""


@dataclass(frozen=True)
class Exploration:
    rows: list[dict]
    """One per (w, task): w, kind, angle_deg, w_vector, weights, task, success, mean_return, video."""
    files: list[Path]
    note: str
    """Why no video was made, where one was asked for and none could be."""


def _w_name(w: np.ndarray) -> str:
    return "w" + "_".join(f"{x:+.2f}" for x in w)


def circle_probes(points: int) -> list[Probe]:
    """`points` unit vectors at angles evenly spaced from 0°."""
    probes = []
    for angle in np.arange(points) * 360.0 / points:
        w = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        probes.append(Probe(f"angle{angle:05.1f}", "circle", w, w, float(angle)))
    return probes


def mix_probes(learned: LearnedW, points: int, seed: int) -> list[Probe]:
    """`points` convex combinations of the tasks' w, weights drawn from a uniform Dirichlet (as the method would
    use them: re-projected onto the unit sphere where the run asks for it)."""
    weights = np.random.default_rng(seed).dirichlet(np.ones(len(learned.task_names)), size=points)
    rows = weights @ learned.w
    used = np.asarray(learned.method.task_vectors(jnp.asarray(rows, jnp.float32)), np.float64)
    return [Probe(f"mix{j}_{_w_name(w)}", "mix", row, w, weights=weights[j])
            for j, (row, w) in enumerate(zip(rows, used))]


def learned_probes(learned: LearnedW, tasks: Sequence[str]) -> list[Probe]:
    """The learned w of each of `tasks`, named by its task."""
    circle = on_unit_circle(learned.config)
    probes = []
    for task in tasks:
        i = learned.task_names.index(task)
        w = learned.w[i]
        angle = float(np.degrees(np.arctan2(w[1], w[0]))) if circle else None
        probes.append(Probe(f"learned-{task}_{_w_name(w)}", "learned", np.asarray(learned.params["w"][i]), w, angle))
    return probes


def with_task_vector(params: dict, row: np.ndarray) -> dict:
    """Checkpoint parameters with every task's row of w set to `row`."""
    rows = np.broadcast_to(np.asarray(row, params["w"].dtype), params["w"].shape)
    return {**params, "w": np.array(rows)}


def chosen_tasks(run_tasks: Sequence[str], requested: Sequence[str]) -> tuple[str, ...]:
    """The run's task names for `requested` (with or without '-v3'); all of them where none are requested."""
    if not requested:
        return tuple(run_tasks)
    by_name = {task.removesuffix("-v3"): task for task in run_tasks} | {task: task for task in run_tasks}
    unknown = [task for task in requested if task not in by_name]
    if unknown:
        raise ValueError(f"unknown task {', '.join(unknown)}; this run's tasks: {', '.join(run_tasks)}")
    tasks = tuple(by_name[task] for task in requested)
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"a task is named twice in --tasks {','.join(requested)}")
    return tasks


# -- rendering ----------------------------------------------------------------------------------------------
def headless_gl() -> str:
    """The OpenGL backend MuJoCo renders with: MUJOCO_GL where the user set it, else EGL where it can make a GL
    context here, else OSMesa; a ValueError saying why where none can.

    The choice is written into MUJOCO_GL, which gymnasium's offscreen viewer reads each time it makes a GL
    context, so it holds even where mujoco was imported before (mujoco reads MUJOCO_GL once, on import, for its
    own `mujoco.Renderer`, which is why that is not used here)."""
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    errors = {}
    for backend in [chosen] if chosen else ["egl", "osmesa"]:
        errors[backend] = _gl_error(backend)
        if errors[backend] is None:
            os.environ["MUJOCO_GL"] = backend
            return backend
    raise ValueError(f"cannot render: {'; '.join(f'{b}: {e}' for b, e in errors.items())} (the README lists the "
                     f"OpenGL libraries rendering needs; --video none skips the videos)")


@functools.cache
def _gl_error(backend: str) -> str | None:
    """Why MuJoCo cannot make a GL context with `backend` here; None where it can.

    Tried in a child process: a failed EGL start leaves PyOpenGL bound to EGL, and OSMesa could no longer load.
    Without close_fds the child is spawned, not forked: forking a process that runs JAX's threads is unsafe."""
    if backend not in GL_BACKENDS:
        return f"MUJOCO_GL={backend} is none of {', '.join(GL_BACKENDS)}"
    probe = f"from mujoco.{backend} import GLContext; c = GLContext(8, 8); c.make_current(); c.free()"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, close_fds=False)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]


def _viewer(sim, width: int, height: int):
    """MuJoCo's offscreen renderer on a sub-env's own model and data, looking at the table from the front.

    Shadows and reflections are off: software OpenGL (llvmpipe, OSMesa) then draws a frame five times faster,
    and the arm, objects and goal stay as clear."""
    import mujoco
    from gymnasium.envs.mujoco.mujoco_rendering import OffScreenViewer

    headless_gl()
    offscreen = sim.model.vis.global_  # the offscreen framebuffer must hold a whole frame
    offscreen.offwidth, offscreen.offheight = max(offscreen.offwidth, width), max(offscreen.offheight, height)
    viewer = OffScreenViewer(sim.model, sim.data, width, height)
    viewer.cam.distance, viewer.cam.elevation, viewer.cam.azimuth = (CAMERA[k] for k in ("distance", "elevation",
                                                                                         "azimuth"))
    viewer.cam.lookat[:] = CAMERA["lookat"]
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    return viewer


class FirstEpisodeFilm:
    """A Meta-World vector env that films the first episode after each reset of some of its sub-envs, while
    `evaluate` steps it.

    The state after an episode's last step is not filmed: by then the sub-env has already reset (autoreset).
    """

    def __init__(self, env: MultiTaskEnv, tasks: Sequence[int], width: int, height: int):
        self.env = env
        self.viewers = {i: _viewer(env.vector.envs[i].unwrapped, width, height) for i in tasks}
        self.frames: dict[int, list[np.ndarray]] = {}
        self.filming: set[int] = set()

    def __getattr__(self, name):
        return getattr(self.env, name)

    def _film(self) -> None:
        for i in self.filming:
            self.viewers[i].make_context_current()  # every viewer has its own GL context
            self.frames[i].append(self.viewers[i].render("rgb_array", camera_id=-1))

    def reset(self) -> np.ndarray:
        obs = self.env.reset()
        self.frames, self.filming = {i: [] for i in self.viewers}, set(self.viewers)
        self._film()
        return obs

    def step(self, actions: np.ndarray) -> Transition:
        out = self.env.step(actions)
        self.filming -= set(np.flatnonzero(out.terminated | out.truncated).tolist())
        self._film()
        return out

    def close(self) -> None:
        for viewer in self.viewers.values():
            # MuJoCo's render context frees its GL objects in whichever GL context is current when it goes: freed
            # later, it would wipe those of another viewer.
            viewer.make_context_current()
            viewer.con.free()
            viewer.close()
        self.env.close()


def write_video(path: Path, frames: Sequence[np.ndarray]) -> None:
    """A looping GIF (Pillow) or an H.264 MP4 (ffmpeg), by the file's suffix."""
    if path.suffix == ".gif":
        iio.imwrite(path, np.stack(frames), plugin="pillow", duration=1000 / VIDEO_FPS, loop=0)
    else:  # yuv420p needs even sizes: odd ones are scaled up by a pixel, not to multiples of 16
        with warnings.catch_warnings():  # ffmpeg is started by fork and exec: no Python runs in the child
            warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
            iio.imwrite(path, np.stack(frames), plugin="FFMPEG", fps=VIDEO_FPS, macro_block_size=2)


# -- the exploration ----------------------------------------------------------------------------------------
def explore(run_dir, out_dir, settings: ExploreSettings) -> Exploration:
    """Roll out every sampled w and every chosen task's own w on the chosen tasks; write the table as CSV and
    JSON (and the videos) into `out_dir`."""
    learned = restore_learned_w(run_dir, settings.checkpoint)
    tasks = chosen_tasks(learned.task_names, settings.tasks)
    sampled = circle_probes(settings.points) if on_unit_circle(learned.config) else \
        mix_probes(learned, settings.points, settings.seed)
    env_config = dataclasses.replace(learned.config.env, explode_task=-1)  # the task, not the perturbation
    seed = learned.config.seed + SCORE_SEED_OFFSET + settings.seed
    task_ids = np.arange(len(learned.task_names))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, files = [], []
    strips: dict[str, list[tuple[str, list[np.ndarray]]]] = {task: [] for task in tasks}
    env = make_env(env_config, seed)
    start = env.get_state()
    filmed = settings.video != "none" and isinstance(env, MetaWorldMultiTask)
    try:
        if filmed:
            env = FirstEpisodeFilm(env, [learned.task_names.index(task) for task in tasks], settings.width,
                                   settings.height)
        for probe in sampled + learned_probes(learned, tasks):
            agent = Agent(learned.config, with_task_vector(learned.params, probe.row), learned.step)
            env.set_state(start)  # every w meets the same goals
            result = evaluate(env, lambda obs: agent.act(obs, task_ids), settings.episodes)
            for task in tasks:
                video = out_dir / f"{probe.name}_{task}.{settings.video}" if filmed else None
                if video is not None:
                    frames = env.frames[learned.task_names.index(task)]
                    write_video(video, frames)
                    files.append(video)
                    strips[task].append((f"{probe.name}: {100 * result['success'][task]:.0f}%", frames))
                rows.append({"w": probe.name, "kind": probe.kind, "angle_deg": probe.angle,
                             "w_vector": probe.w.tolist(),
                             "weights": None if probe.weights is None else probe.weights.tolist(), "task": task,
                             "success": result["success"][task], "mean_return": result["return"][task],
                             "video": None if video is None else video.name})
    finally:
        env.close()
    if filmed:
        files += [contact_sheet(out_dir / f"explore-{task}.png", task, strips[task]) for task in tasks]
    files += _write_table(out_dir, rows, learned, settings, sampled[0].kind)
    note = f"--video {settings.video} ignored: the built-in point mass has no renderer" \
        if settings.video != "none" and not filmed else ""
    return Exploration(rows, files, note)


def contact_sheet(path: Path, task: str, strips: Sequence[tuple[str, Sequence[np.ndarray]]]) -> Path:
    """One row per w (labelled with its success), SHEET_FRAMES frames evenly spaced through its first episode: the
    behaviours of the subspace side by side, as the paper's Figure 3b shows them."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1.3 * SHEET_FRAMES + 1.6, 1.3 * len(strips) + 0.4), layout="constrained")
    axes = figure.subplots(len(strips), SHEET_FRAMES, squeeze=False)
    for row, (label, frames) in zip(axes, strips):
        picked = np.linspace(0, len(frames) - 1, SHEET_FRAMES).round().astype(int)
        for cell, index in zip(row, picked):
            cell.imshow(frames[index])
            cell.set_xticks([]), cell.set_yticks([])
        row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize="small")
    figure.suptitle(f"{task}: the first episode of each w (frames evenly spaced in time)", fontsize="medium")
    figure.savefig(path, dpi=80)
    return path


def _write_table(out_dir: Path, rows: list[dict], learned: LearnedW, settings: ExploreSettings,
                 sampling: str) -> list[Path]:
    """explore.json (the whole table, with the run's task order that `weights` follows) and explore.csv (w and
    weights spread over columns)."""
    k = learned.w.shape[1]
    summary = {"step": learned.step, "episodes": settings.episodes, "seed": settings.seed, "sampling": sampling,
               "task_names": list(learned.task_names), "rows": rows}
    (out_dir / TABLE_JSON).write_text(json.dumps(summary, indent=1))
    columns = ["w", "kind", "angle_deg", *(f"w{i}" for i in range(k)),
               *(f"weight_{task}" for task in learned.task_names), "task", "success", "mean_return", "video"]
    with open(out_dir / TABLE_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in rows:
            flat = {key: value for key, value in row.items() if key not in ("w_vector", "weights")}
            flat |= {f"w{i}": x for i, x in enumerate(row["w_vector"])}
            flat |= {f"weight_{task}": x for task, x in zip(learned.task_names, row["weights"] or ())}
            writer.writerow(flat)
    return [out_dir / TABLE_JSON, out_dir / TABLE_CSV]


def exploration_table(rows: list[dict]) -> str:
    """The rollouts for the terminal: one line per (w, task)."""
    w_width = max(len("w"), *(len(row["w"]) for row in rows))
    task_width = max(len("task"), *(len(row["task"]) for row in rows))
    lines = [f"{'w':<{w_width}}  {'task':<{task_width}}  success  mean return",
             f"{'-' * w_width}  {'-' * task_width}  -------  -----------"]
    lines += [f"{row['w']:<{w_width}}  {row['task']:<{task_width}}  {100 * row['success']:6.1f}%  "
              f"{row['mean_return']:11.2f}" for row in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """`paco explore RUN_DIR [--tasks NAME,...] [--points N] [--episodes E] [--video gif|mp4|none] [--out DIR]
    [--seed S] [--checkpoint STEP] [--width W --height H]`."""
    defaults = ExploreSettings()
    parser = argparse.ArgumentParser(prog="paco explore", description="Roll out policies whose w is sampled from a "
                                     "PaCo run's w-space (the paper's Figure 3b), with videos on Meta-World.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--tasks", default="", help="comma-separated tasks to roll out on (default: all)")
    parser.add_argument("--points", type=int, default=defaults.points, help="number of sampled w")
    parser.add_argument("--episodes", type=int, default=defaults.episodes, help="episodes per (w, task)")
    parser.add_argument("--video", choices=VIDEO_FORMATS, default=defaults.video)
    parser.add_argument("--out", type=Path, help="output directory (default: RUN_DIR/explore)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--checkpoint", type=int, help="checkpoint step (default: the newest good one)")
    parser.add_argument("--width", type=int, default=defaults.width, help="video width in pixels")
    parser.add_argument("--height", type=int, default=defaults.height, help="video height in pixels")
    options = parser.parse_args(argv)
    settings = ExploreSettings(tuple(t.strip() for t in options.tasks.split(",") if t.strip()), options.points,
                               options.episodes, options.video, options.seed, options.checkpoint, options.width,
                               options.height)
    try:
        exploration = explore(options.run_dir, options.out or options.run_dir / "explore", settings)
    except CheckpointError as error:
        raise ValueError(str(error)) from None
    print(exploration_table(exploration.rows))
    if exploration.note:
        print(exploration.note)
    for path in exploration.files:
        print(f"wrote {path}")
