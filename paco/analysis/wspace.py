"""The learned compositional vectors of a PaCo run, drawn as the paper draws them.

Figure 4: a 2-D PCA of every task's w, each point named by its task. Figure 3a: for K = 2 and unit-norm w,
each task's w on the unit circle with its angle. `paco wspace RUN_DIR` writes both (`w-pca.png`,
`w-circle.png`) from the run's newest good checkpoint, or from `--checkpoint STEP`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from paco.checkpoint import CheckpointError, read_config, restore_params
from paco.config import Config
from paco.envs import env_dims, task_names
from paco.methods import build_method
from paco.methods.compositional import Compositional

PCA_FILE, CIRCLE_FILE = "w-pca.png", "w-circle.png"


@dataclass(frozen=True)
class LearnedW:
    """A PaCo checkpoint as a w-space analysis reads it."""

    config: Config
    method: Compositional
    params: dict
    """The checkpoint's parameters as restored (what `paco.agent.Agent` is built from)."""
    step: int
    task_names: tuple[str, ...]
    w: np.ndarray
    """(T, K): every task's w as the policy uses it (projected onto the unit sphere where the run asks for it)."""


def learned_w_method(run_dir, config: Config) -> Compositional:
    """The run's method, where it learns compositional vectors w; a ValueError saying so otherwise."""
    method = build_method(config.network, task_names(config.env), *env_dims(config.env))
    if not (isinstance(method, Compositional) and method.arch.w_trainable):
        raise ValueError(f"{run_dir}: method {config.network.name!r} learns no task vectors w "
                         f"(only PaCo does), so it has no w-space to draw")
    return method


def restore_learned_w(run_dir, checkpoint: int | None = None) -> LearnedW:
    """The newest good checkpoint of a PaCo run, or `checkpoint`; the method is checked before any checkpoint
    is read."""
    method = learned_w_method(run_dir, read_config(run_dir))
    config, params, step = restore_params(run_dir, checkpoint)
    w = np.asarray(method.task_vectors(jnp.asarray(params["w"])), np.float64)
    return LearnedW(config, method, params, step, task_names(config.env), w)


def learned_task_vectors(run_dir, checkpoint: int | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """Task names and their w (T, K) as the policy uses them, from the newest good checkpoint or `checkpoint`."""
    learned = restore_learned_w(run_dir, checkpoint)
    return learned.task_names, learned.w


def pca_2d(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (T, 2) of the centred rows of `w` on its two principal axes, and the fraction of the total
    variance along each. Fewer than two axes (K = 1, or one task) leave zeros in the missing ones."""
    centred = w - w.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    coords, variance = np.zeros((len(w), 2)), np.zeros(2)
    n = min(2, len(singular))
    coords[:, :n] = centred @ axes[:n].T
    total = np.sum(singular ** 2)
    variance[:n] = singular[:n] ** 2 / total if total > 0 else 0.0
    return coords, variance


def circle_angles(w: np.ndarray) -> np.ndarray:
    """Angle of each 2-D w in degrees, in (-180, 180]."""
    return np.degrees(np.arctan2(w[:, 1], w[:, 0]))


def on_unit_circle(config: Config) -> bool:
    """Whether the run's w live on the unit circle (K = 2, unit-norm w): Figure 3's setting."""
    return config.network.num_components == 2 and config.network.w_unit_norm


def _label_points(axes, names, xy) -> None:
    axes.scatter(xy[:, 0], xy[:, 1], s=36, c=[f"C{i % 10}" for i in range(len(names))], zorder=3)
    for name, (x, y) in zip(names, xy):
        axes.annotate(name, (x, y), xytext=(5, 5), textcoords="offset points", fontsize="small")


def pca_figure(names, w: np.ndarray, title: str) -> Figure:
    """Figure 4: every task's w on the first two principal axes, named by its task."""
    coords, variance = pca_2d(w)
    figure = Figure(figsize=(6, 5), layout="constrained")
    axes = figure.add_subplot()
    _label_points(axes, names, coords)
    axes.set(xlabel=f"PC1 ({100 * variance[0]:.1f}% of variance)",
             ylabel=f"PC2 ({100 * variance[1]:.1f}% of variance)", title=title)
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.axvline(0, color="grey", linewidth=0.5)
    axes.margins(0.2)
    axes.grid(alpha=0.3)
    return figure


def circle_figure(names, w: np.ndarray, title: str) -> Figure:
    """Figure 3a: every task's (unit) w on the unit circle, named by its task and its angle."""
    angles = circle_angles(w)
    figure = Figure(figsize=(5.5, 5.5), layout="constrained")
    axes = figure.add_subplot()
    theta = np.linspace(0, 2 * np.pi, 361)
    axes.plot(np.cos(theta), np.sin(theta), color="grey", linewidth=1)
    _label_points(axes, [f"{name} ({angle:.1f}°)" for name, angle in zip(names, angles)], w)
    axes.set(xlabel="w[0]", ylabel="w[1]", title=title, aspect="equal", xlim=(-1.45, 1.45), ylim=(-1.45, 1.45))
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.axvline(0, color="grey", linewidth=0.5)
    return figure


def w_figures(run_dir, out_dir, checkpoint: int | None = None) -> list[Path]:
    """Write `w-pca.png` and, for a K = 2 unit-norm run, `w-circle.png` into `out_dir`; returns their paths."""
    learned = restore_learned_w(run_dir, checkpoint)
    names, w, step = learned.task_names, learned.w, learned.step
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = f"{Path(run_dir).resolve().parent.name}/{Path(run_dir).resolve().name}"
    figures = {PCA_FILE: pca_figure(names, w, f"learned w (K = {w.shape[1]})\n{run}, step {step}")}
    if on_unit_circle(learned.config):
        figures[CIRCLE_FILE] = circle_figure(names, w, f"learned w on the unit circle\n{run}, step {step}")
    paths = []
    for name, figure in figures.items():
        figure.savefig(out_dir / name, dpi=110)
        paths.append(out_dir / name)
    return paths


def main(argv: list[str]) -> None:
    """`paco wspace RUN_DIR [--out DIR] [--checkpoint STEP]`."""
    parser = argparse.ArgumentParser(prog="paco wspace", description="Draw a PaCo run's learned task vectors w "
                                     "(the paper's Figure 4, and Figure 3a for K = 2 unit-norm runs).")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, help="output directory (default: the run directory)")
    parser.add_argument("--checkpoint", type=int, help="checkpoint step (default: the newest good one)")
    options = parser.parse_args(argv)
    try:
        paths = w_figures(options.run_dir, options.out or options.run_dir, options.checkpoint)
        config = read_config(options.run_dir)
    except CheckpointError as error:
        raise ValueError(str(error)) from None
    for path in paths:
        print(f"wrote {path}")
    if not on_unit_circle(config):
        print(f"no {CIRCLE_FILE}: the unit-circle figure needs K = 2 and unit-norm w; this run has "
              f"K = {config.network.num_components}, unit-norm w {'on' if config.network.w_unit_norm else 'off'}")
