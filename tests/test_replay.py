"""Replay stores each observation once and samples exactly what the two-array buffer before it did; checkpoints
write only the replay added since the previous one, and load, fall back and survive crashes as before."""

import copy
import os
import shutil

import numpy as np
import pytest

from paco import checkpoint
from paco.checkpoint import CheckpointError, Snapshot
from paco.replay import MultiTaskReplay
from paco.sac import Batch

TASKS, CAPACITY, OBS_DIM, ACTION_DIM, EPISODE = 3, 50, 5, 2, 7


class TwoArrayReplay:
    """The buffer before: obs and next_obs stored separately, for every slot."""

    def __init__(self, num_tasks, capacity, obs_dim, action_dim, seed):
        t, c = num_tasks, capacity
        self.capacity, self.position, self.size = c, 0, 0
        self.data = {"obs": np.zeros((t, c, obs_dim), np.float32), "action": np.zeros((t, c, action_dim), np.float32),
                     "reward": np.zeros((t, c), np.float32), "next_obs": np.zeros((t, c, obs_dim), np.float32),
                     "terminated": np.zeros((t, c), np.float32)}
        self.rng = np.random.default_rng(seed)

    def add(self, obs, action, reward, next_obs, terminated, truncated):
        for name, value in zip(Batch._fields, (obs, action, reward, next_obs, terminated)):
            self.data[name][:, self.position] = value
        self.position = (self.position + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_per_task):
        t = self.data["reward"].shape[0]
        index = self.rng.integers(self.size, size=(t, batch_per_task))
        return Batch(*(self.data[name][np.arange(t)[:, None], index] for name in Batch._fields))

    def nbytes(self):
        return sum(a.nbytes for a in self.data.values())


def transitions(steps, seed=0):
    """What `steps` vector steps of TASKS autoresetting envs give: time limits every EPISODE steps; task 0 also
    terminates early now and then, and task 1 sometimes terminates on the last step (terminated and truncated).
    When episodes end depends on the step only, so another seed's stream continues this one."""
    rng = np.random.default_rng(seed)
    elapsed = np.zeros(TASKS, int)
    obs = rng.normal(size=(TASKS, OBS_DIM))
    for n in range(steps):
        elapsed += 1
        final_obs = rng.normal(size=(TASKS, OBS_DIM))
        truncated = elapsed >= EPISODE
        terminated = np.zeros(TASKS, bool)
        terminated[0] = n % 11 == 5
        terminated[1] = truncated[1] and n % 3 == 0
        done = terminated | truncated
        yield (obs, rng.uniform(-1, 1, (TASKS, ACTION_DIM)), rng.normal(size=TASKS), final_obs, terminated,
               truncated)
        obs = np.where(done[:, None], rng.normal(size=(TASKS, OBS_DIM)), final_obs)
        elapsed[done] = 0


def new_replay(seed=0, capacity=CAPACITY):
    return MultiTaskReplay(TASKS, capacity, OBS_DIM, ACTION_DIM, seed, EPISODE)


def assert_same_batch(batch, expected):
    """Equal in every field; next_obs only where the transition did not terminate (the TD target ignores it)."""
    for name in ("obs", "action", "reward", "terminated"):
        np.testing.assert_array_equal(getattr(batch, name), getattr(expected, name), err_msg=name)
        assert getattr(batch, name).dtype == np.float32, name
    live = expected.terminated == 0
    np.testing.assert_array_equal(batch.next_obs[live], expected.next_obs[live], err_msg="next_obs")
    assert batch.next_obs.dtype == np.float32


def test_samples_equal_the_two_array_buffer_through_episode_ends_and_wrap_around():
    replay, reference = new_replay(), TwoArrayReplay(TASKS, CAPACITY, OBS_DIM, ACTION_DIM, 0)
    kinds = np.zeros(3, int)  # truncated only, terminated only, both: every kind of episode end went through
    for transition in transitions(4 * CAPACITY + 13):
        replay.add(*transition)
        reference.add(*transition)
        terminated, truncated = transition[4], transition[5]
        kinds += [(truncated & ~terminated).sum(), (terminated & ~truncated).sum(), (terminated & truncated).sum()]
        assert_same_batch(replay.sample(64), reference.sample(64))
    assert (kinds > 0).all(), kinds
    assert (replay.added, replay.size, replay.position) == (4 * CAPACITY + 13, CAPACITY, 13)


def test_sample_block_equals_that_many_samples():
    block_replay, replay = new_replay(), new_replay()
    for transition in transitions(CAPACITY + 20):
        block_replay.add(*transition)
        replay.add(*transition)
    block = block_replay.sample_block(5, 3)
    samples = [replay.sample(3) for _ in range(5)]
    for name in Batch._fields:
        np.testing.assert_array_equal(getattr(block, name), np.stack([getattr(s, name) for s in samples]))
    assert block.obs.shape == (5, TASKS, 3, OBS_DIM)


def test_an_empty_buffer_refuses_to_sample():
    with pytest.raises(RuntimeError, match="empty"):
        new_replay().sample(4)


def test_each_observation_is_stored_once():
    """An MT10 buffer: about half the bytes of storing obs and next_obs."""
    replay = MultiTaskReplay(10, 1000, 39, 4, 0, 150)
    reference = TwoArrayReplay(10, 1000, 39, 4, 0)
    assert replay.nbytes() < 0.6 * reference.nbytes()


# -- checkpoints ---------------------------------------------------------------------------------------------
def snapshot(replay):
    step = 7 * replay.added  # env steps need not be replay counts
    return Snapshot(step, {"w": np.full(3, step, np.float32)}, {"v": np.zeros(2)}, replay, {"env_steps": step})


def load(run_dir, step=None, seed=99):
    replay = new_replay(seed)  # another seed: the checkpoint must restore the sampling stream
    loaded = checkpoint.load(run_dir, {"v": np.ones(2)}, replay, step)
    assert loaded.replay is replay and loaded.trainer == {"env_steps": loaded.step}
    np.testing.assert_array_equal(loaded.params["w"], np.full(3, loaded.step, np.float32))
    return loaded


def assert_same_replay(replay, expected, more=()):
    """Same counters and the same samples, also after adding `more` transitions to both."""
    replay, expected = copy.deepcopy(replay), copy.deepcopy(expected)
    for transition in (None, *more):
        if transition is not None:
            replay.add(*transition)
            expected.add(*transition)
        assert (replay.position, replay.size, replay.added) == (expected.position, expected.size, expected.added)
        for _ in range(3):
            batch, reference = replay.sample(32), expected.sample(32)
            for name in Batch._fields:
                np.testing.assert_array_equal(getattr(batch, name), getattr(reference, name), err_msg=name)


def chunks_on_disk(run_dir):
    return sorted(os.listdir(checkpoint.directory(run_dir) / checkpoint.REPLAY))


def listed_chunks(run_dir, step):
    return checkpoint._manifest(checkpoint.directory(run_dir) / checkpoint.step_name(step))["replay"]["chunks"]


def chunk_bytes(run_dir, name):
    path = checkpoint.directory(run_dir) / checkpoint.REPLAY / name
    return sum(p.stat().st_size for p in path.iterdir())


def run_and_save(run_dir, counts, keep, stream_seed=0):
    """Fill a replay from one stream, saving at each count in `counts`; {step: copy of the replay saved}."""
    replay, saved = new_replay(), {}
    stream = transitions(max(counts), stream_seed)
    for count in counts:
        while replay.added < count:
            replay.add(*next(stream))
        replay.sample(8)  # moves the sampling stream, which the checkpoint must hold
        checkpoint.save(run_dir, snapshot(replay), keep)
        saved[snapshot(replay).step] = copy.deepcopy(replay)
    return replay, saved


def test_checkpoints_write_only_new_replay_and_load_what_was_saved(tmp_path):
    replay, saved = new_replay(), {}
    stream = transitions(200)
    per_transition = sum(a.nbytes for a in replay.slots.values()) // CAPACITY  # all tasks
    for count in (20, 45, 80, 100, 130):  # the ring wraps between 45 and 80 and between 130 and the next
        before = set(chunks_on_disk(tmp_path)) if count > 20 else set()
        while replay.added < count:
            replay.add(*next(stream))
        replay.sample(8)
        path = checkpoint.save(tmp_path, snapshot(replay), keep=2)
        saved[snapshot(replay).step] = copy.deepcopy(replay)
        new = set(chunks_on_disk(tmp_path)) - before
        if count == 45:  # after 20 saved: 25 transitions, and a .npy header per file
            assert new == {"000000000020-000000000045"}
            assert 25 * per_transition < chunk_bytes(tmp_path, *new) < 25 * per_transition + 5 * 256
        if count == 80:  # split at the end of the ring
            assert new == {"000000000045-000000000050", "000000000050-000000000080"}
        assert path == checkpoint.directory(tmp_path) / checkpoint.step_name(7 * count)
    steps = checkpoint.checkpoint_steps(tmp_path)
    assert steps == [700, 910]
    assert listed_chunks(tmp_path, 700).keys() == {"000000000050-000000000080", "000000000080-000000000100"}
    assert listed_chunks(tmp_path, 910).keys() == {"000000000080-000000000100", "000000000100-000000000130"}
    assert chunks_on_disk(tmp_path) == ["000000000050-000000000080", "000000000080-000000000100",
                                        "000000000100-000000000130"]
    for step in steps:
        loaded = load(tmp_path, step)
        assert loaded.step == step
        count = step // 7
        assert_same_replay(loaded.replay, saved[step], list(transitions(count + 60, seed=1))[count:])
    assert load(tmp_path).step == 910
    own = checkpoint.directory(tmp_path) / checkpoint.step_name(910)
    assert checkpoint.checkpoint_bytes(tmp_path, 910) == (
        sum(p.stat().st_size for p in own.rglob("*") if p.is_file())
        + chunk_bytes(tmp_path, "000000000080-000000000100") + chunk_bytes(tmp_path, "000000000100-000000000130"))


def corrupt(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupt_chunk_falls_back_to_a_checkpoint_without_it_or_names_the_file(tmp_path, capsys):
    _, saved = run_and_save(tmp_path, (20, 45, 80, 100, 130), keep=2)
    chunks = checkpoint.directory(tmp_path) / checkpoint.REPLAY
    corrupt(chunks / "000000000100-000000000130" / "obs.npy")  # only the newest lists it
    loaded = load(tmp_path)
    assert loaded.step == 700
    assert_same_replay(loaded.replay, saved[700])
    assert capsys.readouterr().err.splitlines() == [
        "paco: warning: checkpoint step_000000000910 is corrupt (checksum mismatch in replay chunk "
        "000000000100-000000000130/obs.npy); using step_000000000700"]
    with pytest.raises(CheckpointError, match="000000000100-000000000130/obs.npy"):
        load(tmp_path, 910)
    corrupt(chunks / "000000000080-000000000100" / "reward.npy")  # both list it
    with pytest.raises(CheckpointError, match=r"step_000000000700 is corrupt \(checksum mismatch in replay chunk "
                                              r"000000000080-000000000100/reward.npy\)"):
        load(tmp_path)
    os.remove(chunks / "000000000080-000000000100" / "reward.npy")
    with pytest.raises(CheckpointError, match="incomplete .replay chunk 000000000080-000000000100/reward.npy"):
        load(tmp_path, 700)


def test_a_replay_of_another_shape_is_refused(tmp_path):
    run_and_save(tmp_path, (20,), keep=2)
    with pytest.raises(CheckpointError, match="does not fit this run's replay buffer .capacity 50, the buffer's 60"):
        checkpoint.load(tmp_path, {"v": np.ones(2)}, new_replay(capacity=60))
    with pytest.raises(CheckpointError, match="does not fit this run's replay buffer .replay/next_obs.npy"):
        checkpoint.load(tmp_path, {"v": np.ones(2)}, MultiTaskReplay(TASKS, CAPACITY, OBS_DIM + 1, ACTION_DIM, 0,
                                                                     EPISODE))


def test_resuming_from_an_older_checkpoint_writes_the_newer_chunks_anew(tmp_path):
    """A resume from 45 removes the checkpoint at 80 (and its chunks); the run then adds other transitions (a
    relaunch draws anew) and saves at 80 again, under the same chunk names. So does a run whose removal crashed
    before the chunks went."""
    removed, crashed = tmp_path / "removed", tmp_path / "crashed"
    for run_dir in (removed, crashed):
        run_and_save(run_dir, (20, 45, 80), keep=3)
    checkpoint.remove(removed, 560)
    assert chunks_on_disk(removed) == ["000000000000-000000000020", "000000000020-000000000045"]
    shutil.rmtree(checkpoint.directory(crashed) / checkpoint.step_name(560))
    for run_dir in (removed, crashed):
        replay = load(run_dir, 315).replay
        for transition in list(transitions(80, seed=2))[45:]:
            replay.add(*transition)
        checkpoint.save(run_dir, snapshot(replay), keep=3)
        assert_same_replay(load(run_dir).replay, replay)
        assert chunks_on_disk(run_dir) == ["000000000000-000000000020", "000000000020-000000000045",
                                           "000000000045-000000000050", "000000000050-000000000080"]


@pytest.mark.parametrize("when", ["in the middle of a chunk", "before the checkpoint is renamed into place"])
def test_an_interrupted_save_leaves_the_previous_checkpoint_in_use(tmp_path, monkeypatch, when):
    replay, saved = run_and_save(tmp_path, (20, 45), keep=2)
    for transition in list(transitions(80))[45:]:
        replay.add(*transition)
    real_write, real_replace, written = checkpoint._write_file, os.replace, []

    def crash_in_a_chunk(path, write):
        written.append(path)
        if len(written) == 3:
            raise KeyboardInterrupt("killed while writing a replay chunk")
        return real_write(path, write)

    def crash_before_the_checkpoint(src, dst):
        if os.path.basename(src).startswith(".tmp-step_"):
            raise KeyboardInterrupt("killed between writing a checkpoint and renaming it into place")
        real_replace(src, dst)

    if when == "in the middle of a chunk":
        monkeypatch.setattr(checkpoint, "_write_file", crash_in_a_chunk)
    else:
        monkeypatch.setattr(os, "replace", crash_before_the_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, snapshot(replay), keep=2)
    monkeypatch.undo()
    assert any(p.name.startswith(".") for p in checkpoint.directory(tmp_path).rglob("*"))
    assert checkpoint.checkpoint_steps(tmp_path) == [140, 315] and checkpoint.newest_step(tmp_path) == 315
    assert_same_replay(load(tmp_path).replay, saved[315])
    checkpoint.save(tmp_path, snapshot(replay), keep=2)
    assert_same_replay(load(tmp_path).replay, replay)
    assert_same_replay(load(tmp_path, 315).replay, saved[315])
    assert not [p for p in checkpoint.directory(tmp_path).rglob("*") if p.name.startswith(".")]
    assert chunks_on_disk(tmp_path) == ["000000000000-000000000020", "000000000020-000000000045",
                                        "000000000045-000000000050", "000000000050-000000000080"]
