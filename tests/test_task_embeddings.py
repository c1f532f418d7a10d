"""The packaged CARE task embeddings: coverage, shape, order, meaning, and one-line errors."""

import json

import numpy as np
import pytest
from metaworld.env_dict import MT50_V3

from paco.envs.task_embeddings import DEFAULT_PATH, load_task_embeddings

POINTMASS = ["rot0", "rot90", "rot180", "rot270"]
ALL_TASKS = list(MT50_V3) + POINTMASS


def cosine(a: str, b: str) -> float:
    x, y = load_task_embeddings([a, b])
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def test_packaged_file_covers_every_task_with_unit_rows():
    emb = load_task_embeddings(ALL_TASKS)
    assert emb.shape == (54, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    data = json.loads(DEFAULT_PATH.read_text())
    assert data["dim"] == 384 and "MiniLM" in data["model"]
    assert set(data["descriptions"]) == set(data["embeddings"]) == set(ALL_TASKS)


def test_rows_come_back_in_the_requested_order():
    names = ["window-close-v3", "rot180", "assembly-v3", "rot0"]
    emb = load_task_embeddings(names)
    for i, name in enumerate(names):
        np.testing.assert_array_equal(emb[i], load_task_embeddings([name])[0])
    np.testing.assert_array_equal(load_task_embeddings(names[::-1]), emb[::-1])
    assert load_task_embeddings([]).shape == (0, 384)


@pytest.mark.parametrize("task, related, unrelated", [
    ("drawer-open-v3", "drawer-close-v3", "basketball-v3"),
    ("window-open-v3", "window-close-v3", "soccer-v3"),
    ("push-v3", "push-wall-v3", "dial-turn-v3"),
    ("plate-slide-v3", "plate-slide-back-side-v3", "hammer-v3"),
    ("rot0", "rot180", "peg-insert-side-v3"),
])
def test_related_tasks_are_closer_than_unrelated_ones(task, related, unrelated):
    assert cosine(task, related) > cosine(task, unrelated) + 0.2


def test_missing_task_is_a_one_line_error_naming_it():
    with pytest.raises(ValueError, match=r"no context embedding for task 'no-such-task-v3' in .*task_embeddings\.json"
                                         r"; add its sentence to scripts/embed_task_descriptions\.py") as err:
        load_task_embeddings(["reach-v3", "no-such-task-v3"])
    assert "\n" not in str(err.value)


def write(tmp_path, data) -> str:
    path = tmp_path / "bad.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.parametrize("data, message", [
    ({"dim": 3, "embeddings": {"a": [1.0, 0.0, 0.0], "b": [1.0, 0.0]}},
     r"task 'b' .* has length 2, but the file's dim is 3"),
    ({"dim": 384, "embeddings": {"a": [1.0, 0.0]}}, r"task 'a' .* has length 2, but the file's dim is 384"),
    ({"dim": 2, "embeddings": {"a": [1.0, "x"]}}, r"task 'a' .* not a list of finite numbers"),
    ({"dim": "384", "embeddings": {}}, r"no valid 'dim'"),
    ({"dim": 2}, r"no 'embeddings' object"),
    ([1, 2], r"must hold a JSON object"),
    ('{"dim": 2, "embeddings": {\n"a": [1, 2\n', r"is not valid JSON"),
])
def test_bad_file_is_a_one_line_error_naming_the_problem(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ValueError, match=message) as err:
        load_task_embeddings(["a"], path=path)
    assert "\n" not in str(err.value) and "bad.json" in str(err.value)


def test_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match=r"cannot read task embeddings file .*absent\.json") as err:
        load_task_embeddings(["a"], path=tmp_path / "absent.json")
    assert "\n" not in str(err.value)
