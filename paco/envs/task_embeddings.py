"""Per-task context vectors for CARE: sentence embeddings of one description per task.

CARE (Sodhani et al. 2021) feeds each task's context, an embedding of a plain-English description of the
task, to its encoder mixture. The embeddings are computed offline by scripts/embed_task_descriptions.py
(all-MiniLM-L6-v2, 384-d, unit norm) and shipped as task_embeddings.json beside this module, so training
reads a small JSON file and never needs a language model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_PATH = Path(__file__).resolve().parent / "task_embeddings.json"
SCRIPT = "scripts/embed_task_descriptions.py"


def _read(path: Path) -> tuple[int, dict]:
    """The file's `dim` and `embeddings`, with every problem reported as a one-line ValueError."""
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"cannot read task embeddings file {path}: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        reason = " ".join(str(err).split())
        raise ValueError(f"task embeddings file {path} is not valid JSON: {reason}") from None
    if not isinstance(data, dict):
        raise ValueError(f"task embeddings file {path} must hold a JSON object, got {type(data).__name__}")
    dim, embeddings = data.get("dim"), data.get("embeddings")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"task embeddings file {path} has no valid 'dim' (a positive integer), got {dim!r}")
    if not isinstance(embeddings, dict):
        raise ValueError(f"task embeddings file {path} has no 'embeddings' object mapping task names to vectors")
    return dim, embeddings


def _row(path: Path, dim: int, name: str, vector) -> np.ndarray:
    if not isinstance(vector, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in vector):
        raise ValueError(f"embedding of task {name!r} in {path} is not a list of finite numbers")
    if len(vector) != dim:
        raise ValueError(f"embedding of task {name!r} in {path} has length {len(vector)}, but the file's dim is {dim}")
    return np.asarray(vector, dtype=np.float32)


def load_task_embeddings(task_names: Sequence[str], path: str | Path | None = None) -> np.ndarray:
    """The context embedding of each task, shape (len(task_names), dim) float32, rows in the order given.

    `path` defaults to the packaged task_embeddings.json. Every embedding in the file is checked against
    its `dim`, not just the requested ones, so a damaged file fails whichever tasks a run asks for.
    """
    path = DEFAULT_PATH if path is None else Path(path)
    if isinstance(task_names, str):
        raise ValueError(f"task_names must be a sequence of task names, got the single string {task_names!r}")
    dim, embeddings = _read(path)
    rows = {name: _row(path, dim, name, vector) for name, vector in embeddings.items()}
    missing = [name for name in task_names if name not in rows]
    if len(missing) == 1:
        raise ValueError(f"no context embedding for task {missing[0]!r} in {path}; "
                         f"add its sentence to {SCRIPT} and re-run it")
    if missing:
        raise ValueError(f"no context embedding for tasks {', '.join(map(repr, missing))} in {path}; "
                         f"add their sentences to {SCRIPT} and re-run it")
    if not task_names:
        return np.zeros((0, dim), np.float32)
    return np.stack([rows[name] for name in task_names])
