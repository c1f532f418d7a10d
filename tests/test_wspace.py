"""The w-space figures (the paper's Figures 3a and 4) and `paco explore` (Figure 3b), on tiny trained runs: the PCA
against the covariance matrix's eigenvectors, the circle's angles against atan2 of the checkpoint's w, rollouts with
a substituted w against `paco evaluate`, and Meta-World videos read back frame by frame."""

import csv
import json
import os
import re
import shutil
import sys

import imageio.v3 as iio
import matplotlib.image as plt_image
import numpy as np
import pytest

from paco import presets
from paco.agent import load_agent
from paco.analysis import explore as explore_cli
from paco.analysis import wspace
from paco.analysis.explore import ExploreSettings, chosen_tasks, explore, write_video
from paco.analysis.wspace import circle_figure, learned_task_vectors, pca_2d, pca_figure, w_figures
from paco.checkpoint import restore_params
from paco.config import replace
from paco.config import save as save_config
from paco.evaluation import SCORE_SEED_OFFSET, score
from paco.trainer import train

TINY = {"checkpoint_every_env_steps": 0, "eval_episodes": 1, "progress": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny PaCo runs (K = 2, unit-norm w) on the point mass and on Meta-World reach; a copy of the point-mass run
    whose config leaves w unnormalised (same checkpoint shapes); an MT-SAC run directory as training starts it
    (its config: what the w-space analysis reads before any checkpoint)."""
    root = tmp_path_factory.mktemp("wspace")
    (root / "mtsac").mkdir()
    save_config(presets.get("pointmass-mtsac"), root / "mtsac" / "config.json")
    configs = {
        "paco": replace(presets.get("pointmass-paco"), network={"w_unit_norm": True, "hidden": (32,)},
                        train={"total_env_steps": 2000, "warmup_env_steps": 1000, "eval_every_env_steps": 2000,
                               "log_every_env_steps": 1000, **TINY}),
        "reach": replace(presets.get("mt3-rand-paco-k2-unit-cpu"), env={"suite": "reach", "max_episode_steps": 30},
                         network={"hidden": (32,)}, sac={"batch_per_task": 16},
                         train={"total_env_steps": 300, "warmup_env_steps": 150, "eval_every_env_steps": 300,
                                "log_every_env_steps": 300, "replay_capacity_per_task": 1000, **TINY}),
    }
    for name, config in configs.items():
        train(replace(config, out=str(root / name)), root / name)
    shutil.copytree(root / "paco", root / "paco-free-w")
    saved = json.loads((root / "paco" / "config.json").read_text())
    saved["network"]["w_unit_norm"] = False
    (root / "paco-free-w" / "config.json").write_text(json.dumps(saved))
    return {name: root / name for name in (*configs, "paco-free-w", "mtsac")}


def raw_w(run_dir) -> np.ndarray:
    return np.asarray(restore_params(run_dir)[1]["w"], np.float64)


# -- Figures 4 and 3a ---------------------------------------------------------------------------------------
def test_figures_are_written(runs, tmp_path):
    paths = w_figures(runs["paco"], tmp_path)
    assert [p.name for p in paths] == ["w-pca.png", "w-circle.png"]
    for path in paths:
        image = iio.imread(path)
        assert 400 <= image.shape[0] <= 1200 and 400 <= image.shape[1] <= 1200, image.shape
        assert image[..., :3].reshape(-1, 3).std(axis=0).max() > 10  # not all one colour


def test_pca_is_the_covariance_eigenbasis(runs):
    names, w = learned_task_vectors(runs["paco"])
    for matrix in (w, np.random.default_rng(0).normal(size=(10, 5))):  # K = 2 (a rotation) and K = 5 to 2-D
        coords, explained = pca_2d(matrix)
        values, vectors = np.linalg.eigh(np.cov(matrix.T))
        values, vectors = values[::-1], vectors[:, ::-1]
        expected = (matrix - matrix.mean(axis=0)) @ vectors[:, :2]
        signs = np.sign(np.sum(coords * expected, axis=0))
        np.testing.assert_allclose(coords, expected * signs, atol=1e-9)
        np.testing.assert_allclose(explained, values[:2] / values.sum(), atol=1e-12)
    coords, explained = pca_2d(w)
    axes = pca_figure(names, w, "").axes[0]
    np.testing.assert_allclose(axes.collections[0].get_offsets(), coords)
    assert axes.get_xlabel() == f"PC1 ({100 * explained[0]:.1f}% of variance)"
    assert [text.get_text() for text in axes.texts] == list(names)


def test_circle_angles_are_atan2_of_the_checkpoints_w(runs):
    w = raw_w(runs["paco"])
    unit = w / np.linalg.norm(w, axis=1, keepdims=True)
    names, used = learned_task_vectors(runs["paco"])
    np.testing.assert_allclose(used, unit, atol=1e-6)
    axes = circle_figure(names, used, "").axes[0]
    np.testing.assert_allclose(axes.collections[0].get_offsets(), unit, atol=1e-6)
    labels = [text.get_text() for text in axes.texts]
    assert [label.split(" ")[0] for label in labels] == list(names)
    angles = [float(re.search(r"\((-?[\d.]+)°\)", label).group(1)) for label in labels]
    np.testing.assert_allclose(angles, np.degrees(np.arctan2(w[:, 1], w[:, 0])), atol=0.05)


def test_free_w_runs_draw_pca_only(runs, tmp_path, capsys):
    names, used = learned_task_vectors(runs["paco-free-w"])
    np.testing.assert_allclose(used, raw_w(runs["paco-free-w"]), atol=1e-6)
    wspace.main([str(runs["paco-free-w"]), "--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w-pca.png"]
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'w-pca.png'}" in out
    assert "no w-circle.png: the unit-circle figure needs K = 2 and unit-norm w; this run has K = 2, unit-norm w off" \
        in out


def test_runs_without_learned_w_are_refused(runs, tmp_path):
    message = "method 'mtsac' learns no task vectors w"
    with pytest.raises(ValueError, match=message):
        learned_task_vectors(runs["mtsac"])
    with pytest.raises(ValueError, match=message):
        wspace.main([str(runs["mtsac"])])
    with pytest.raises(ValueError, match=message):
        explore(runs["mtsac"], tmp_path, ExploreSettings())
    with pytest.raises(ValueError, match="is not a run directory"):
        wspace.main([str(tmp_path)])


# -- paco explore -------------------------------------------------------------------------------------------
def test_explore_on_the_circle(runs, tmp_path):
    """Three angles and the four tasks' own w, each on every task; a task's own w scores as `paco evaluate`."""
    names, w = learned_task_vectors(runs["paco"])
    exploration = explore(runs["paco"], tmp_path, ExploreSettings(points=3, episodes=2))
    rows = exploration.rows
    assert len(rows) == (3 + len(names)) * len(names)
    assert len({(row["w"], row["task"]) for row in rows}) == len(rows)
    circle = {row["w"]: row for row in rows if row["kind"] == "circle"}
    assert [row["angle_deg"] for row in circle.values()] == [0.0, 120.0, 240.0]
    for row in circle.values():
        angle = np.radians(row["angle_deg"])
        np.testing.assert_allclose(row["w_vector"], [np.cos(angle), np.sin(angle)], atol=1e-12)
    agent = load_agent(runs["paco"])
    scored = score(agent, "paco", 2, agent.config.seed + SCORE_SEED_OFFSET)
    for i, task in enumerate(names):
        own = [row for row in rows if row["kind"] == "learned" and row["w"].startswith(f"learned-{task}_")]
        assert len(own) == len(names)
        np.testing.assert_allclose(own[0]["w_vector"], w[i])
        assert own[0]["angle_deg"] == pytest.approx(np.degrees(np.arctan2(w[i, 1], w[i, 0])))
        mine = next(row for row in own if row["task"] == task)
        assert (mine["success"], mine["mean_return"]) == (scored["success"][task], scored["return"][task])
    assert exploration.note == "--video mp4 ignored: the built-in point mass has no renderer"
    saved = json.loads((tmp_path / "explore.json").read_text())
    assert saved["rows"] == rows and saved["sampling"] == "circle" and saved["task_names"] == list(names)
    with open(tmp_path / "explore.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["w"], r["task"], float(r["success"])) for r in table] == \
        [(r["w"], r["task"], r["success"]) for r in rows]


def test_explore_mixes_the_learned_w(runs, tmp_path, capsys):
    """A run whose w are not on the unit circle: Dirichlet mixes of the tasks' w, on the chosen tasks only."""
    names, w = learned_task_vectors(runs["paco-free-w"])
    explore_cli.main([str(runs["paco-free-w"]), "--tasks", "rot90,rot0", "--points", "2", "--episodes", "1",
                      "--video", "none", "--out", str(tmp_path), "--seed", "3"])
    rows = json.loads((tmp_path / "explore.json").read_text())["rows"]
    assert [(row["kind"], row["task"]) for row in rows] == [("mix", "rot90"), ("mix", "rot0")] * 2 + \
        [("learned", "rot90"), ("learned", "rot0")] * 2
    weights = np.random.default_rng(3).dirichlet(np.ones(len(names)), size=2)
    for j, row in enumerate(rows[:4:2]):
        np.testing.assert_allclose(row["weights"], weights[j])
        np.testing.assert_allclose(row["w_vector"], weights[j] @ w, atol=1e-6)
    out = capsys.readouterr().out
    assert re.search(r"mix0_w\S+\s+rot90\s+\d+\.\d%\s+-?\d+\.\d\d", out), out
    assert "ignored" not in out and f"wrote {tmp_path / 'explore.csv'}" in out


def test_explore_films_metaworld(runs, tmp_path, monkeypatch):
    """GIFs of the first episode of every (w, task), drawn after the trainer has imported mujoco (as other tests
    do) with MUJOCO_GL unset: the backend is chosen then, and every w's film starts from the same goal."""
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    assert "mujoco" in sys.modules
    exploration = explore(runs["reach"], tmp_path, ExploreSettings(points=2, episodes=1, video="gif", width=64,
                                                                        height=48))
    assert os.environ["MUJOCO_GL"] in ("egl", "osmesa")
    videos = sorted(p.name for p in exploration.files if p.suffix == ".gif")
    assert videos[:2] == ["angle000.0_reach-v3.gif", "angle180.0_reach-v3.gif"]
    assert re.fullmatch(r"learned-reach-v3_w[+-]\d\.\d\d_[+-]\d\.\d\d_reach-v3\.gif", videos[2]), videos
    films = [iio.imread(tmp_path / name, index=None) for name in videos]
    for frames in films:
        assert frames.shape[0] == 30 and frames.shape[1:3] == (48, 64)
        assert min(frame.std() for frame in frames) > 10  # drawn, not blank
        assert len({frame.tobytes() for frame in frames}) > 10  # the arm moves
    for frames in films[1:]:
        np.testing.assert_array_equal(frames[0], films[0][0])
    assert [row["video"] for row in exploration.rows] == videos
    sheet = plt_image.imread(tmp_path / "explore-reach-v3.png")  # one row of frames per w
    assert sheet.shape[0] >= 200 and sheet.shape[1] >= 400 and sheet.std() > 0.05


def test_explore_cannot_render(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "no-such-backend")
    with pytest.raises(ValueError, match=r"cannot render: no-such-backend: MUJOCO_GL=no-such-backend is none of "
                                         r"egl, osmesa, glfw \(.*--video none skips the videos\)"):
        explore(runs["reach"], tmp_path, ExploreSettings(points=1, episodes=1, width=32, height=32))


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # reading starts ffmpeg by fork and exec
def test_mp4(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, size=(6, 32, 48, 3), dtype=np.uint8)
    write_video(tmp_path / "film.mp4", frames)
    assert iio.imread(tmp_path / "film.mp4", index=None, plugin="FFMPEG").shape == frames.shape


def test_bad_input():
    with pytest.raises(ValueError, match="--points must be positive, got 0"):
        ExploreSettings(points=0)
    with pytest.raises(ValueError, match="--width must be positive, got -1"):
        ExploreSettings(width=-1)
    assert chosen_tasks(("reach-v3", "push-v3"), ("push", "reach-v3")) == ("push-v3", "reach-v3")
    with pytest.raises(ValueError, match="unknown task pick; this run's tasks: reach-v3, push-v3"):
        chosen_tasks(("reach-v3", "push-v3"), ("pick",))
    with pytest.raises(ValueError, match="named twice"):
        chosen_tasks(("reach-v3",), ("reach", "reach-v3"))
