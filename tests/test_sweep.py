"""`paco sweep` on a local Ray: its runs are the runs `paco.trainer.train` makes one by one, a killed worker's run
is retried from its checkpoint and ends as if never killed, a finished sweep run again touches nothing, and bad
input is one line before anything starts."""

import hashlib
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import ray

from paco import cli
from paco.checkpoint import checkpoint_steps
from paco.runlock import live_owner, run_lock
from paco.sweeps import main, parse_seeds, parse_sweep_args, plan_runs, run_sweep
from paco.sweeps.sweep import RunProgress, last_error_line, logged_env_steps, summary_line
from paco.trainer import RelaunchLimit

PRESETS = ("pointmass-mtsac", "pointmass-paco")
TRAIN = {"total_env_steps": 2000, "warmup_env_steps": 400, "log_every_env_steps": 400, "eval_every_env_steps": 1000,
         "eval_episodes": 2, "checkpoint_every_env_steps": 400, "replay_capacity_per_task": 2000}
OVERRIDES = ["--network.hidden", "16", "--sac.batch-per-task", "16",
             *[f"--train.{k.replace('_', '-')}={v}" for k, v in TRAIN.items()]]
TIMEOUT = 300  # seconds


def sweep_args(out, presets=PRESETS, seeds="0-1", overrides=OVERRIDES):
    return ["--presets", ",".join(presets), "--seeds", seeds, "--out", str(out), *overrides]


# The runs of the sweep, one after another in a process of their own (which compiles each update once, for the
# sweep's workers too, through the shared compilation cache); their configs built without the sweep's parsing.
ONE_BY_ONE = """
import json, sys
from pathlib import Path
from paco import presets
from paco.config import replace
from paco.trainer import train
root, settings = Path(sys.argv[1]), json.loads(sys.argv[2])
for preset in settings["presets"]:
    for seed in (0, 1):
        run_dir = root / preset / f"seed{seed}"
        train(replace(presets.get(preset), seed=seed, out=str(run_dir), network={"hidden": (16,)},
                      sac={"batch_per_task": 16}, train={**settings["train"], "progress": False}), run_dir)
"""


def files(root):
    """Every file under root with its modification time and a hash of its content."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
    """A compilation cache for every process this module starts (the cached executable computes the same
    numbers): each update is compiled once, instead of once per run."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JAX_PLATFORMS", "cpu")
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")  # a test reports nothing anywhere
        env.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        env.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax-cache")))
        yield


@pytest.fixture(scope="module")
def one_by_one(compilation_cache, tmp_path_factory):
    """The sweep's four runs, trained one after another by `paco.trainer.train`."""
    root = tmp_path_factory.mktemp("one-by-one")
    subprocess.run([sys.executable, "-c", ONE_BY_ONE, str(root), json.dumps({"presets": PRESETS, "train": TRAIN})],
                   check=True, capture_output=True, timeout=TIMEOUT)
    return root


@pytest.fixture(scope="module")
def ray_session(compilation_cache, one_by_one):
    """Ray on this machine for the whole module, started after the runs above have filled the cache (its
    workers inherit this process's environment)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def swept(ray_session, tmp_path_factory):
    """A 2 presets × 2 seeds sweep, through `main`, with what it printed."""
    out = tmp_path_factory.mktemp("sweep")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", printed)
        assert main(sweep_args(out)) == 0
    return out, printed.getvalue()


def test_sweep_runs_equal_the_same_runs_made_one_by_one(swept, one_by_one):
    out, printed = swept
    assert sorted(str(p.relative_to(out)) for p in out.glob("*/seed*")) == [
        "pointmass-mtsac/seed0", "pointmass-mtsac/seed1", "pointmass-paco/seed0", "pointmass-paco/seed1"]
    for run_dir in out.glob("*/seed*"):
        reference = one_by_one / run_dir.relative_to(out)
        for name in ("metrics.jsonl", "events.jsonl", "config.json"):
            expected = (reference / name).read_bytes().replace(str(reference).encode(), str(run_dir).encode())
            assert (run_dir / name).read_bytes() == expected, (run_dir, name)
        assert checkpoint_steps(run_dir)[-1] == 2000 and live_owner(run_dir) is None
    lines = printed.splitlines()
    assert lines[0] == f"sweep: 4 runs into {out}, 0 of them finished already"
    assert "sweep: 4 done, 0 running, 0 failed, 0 queued; 8.0k of 8.0k env steps (100%)" in printed
    assert "| pointmass-mtsac | 2 |" in printed and "| pointmass-paco | 2 |" in printed, "the multi-seed table"


def test_finished_sweep_run_again_trains_nothing_and_touches_nothing(swept, capsys):
    out, _ = swept
    before = files(out)
    assert main(sweep_args(out)) == 0
    assert files(out) == before
    sweep_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sweep: ")]
    assert sweep_lines == [f"sweep: 4 runs into {out}, 4 of them finished already"], "no run was started"


def test_out_directory_holding_other_settings_is_refused_before_anything_starts(swept):
    out, _ = swept
    before = files(out)
    with pytest.raises(ValueError) as refused:
        main(sweep_args(out, overrides=[*OVERRIDES, "--sac.batch-per-task", "8", "--sac.gamma", "0.9"]))
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and message.startswith("the out directory holds runs of other settings")
    for run in ("pointmass-mtsac/seed0", "pointmass-paco/seed1"):
        assert f"{out / run} (sac.batch_per_task: 8 != 16; sac.gamma: 0.9 != 0.99)" in message
    assert files(out) == before


def test_killed_worker_is_retried_from_its_checkpoint_until_retries_run_out_and_failures_stop_no_other_run(
        ray_session, one_by_one, tmp_path):
    """Seed 0's worker is killed once after a checkpoint, seed 2's each time it starts (twice, with one retry
    allowed), seed 1's training raises at once (this process holds its run directory)."""
    out = tmp_path / "sweep"
    settings = parse_sweep_args([*sweep_args(out, presets=PRESETS[:1], seeds="0-2"), "--max-retries", "1"])
    runs = plan_runs(settings)
    resumed, blocked, doomed = (run.run_dir for run in runs)
    failures, kills = {}, {resumed: [], doomed: []}
    with run_lock(blocked):
        sweep = threading.Thread(target=lambda: failures.update(run_sweep(settings, runs, 0.5, io.StringIO())))
        sweep.start()
        deadline = time.monotonic() + TIMEOUT
        while sweep.is_alive():
            assert time.monotonic() < deadline, "the sweep did not end in time"
            for run_dir, times, ready in ((resumed, 1, checkpoint_steps(resumed)), (doomed, 2, True)):
                pid = live_owner(run_dir)
                if ready and pid is not None and pid not in kills[run_dir] and len(kills[run_dir]) < times:
                    os.kill(pid, signal.SIGKILL)
                    kills[run_dir].append(pid)
            time.sleep(0.02)
    assert len(kills[resumed]) == 1 and len(kills[doomed]) == 2 and os.getpid() not in kills[doomed]
    assert failures.keys() == {"pointmass-mtsac/seed1", "pointmass-mtsac/seed2"}
    assert failures["pointmass-mtsac/seed1"] == (f"RunDirectoryBusy: {blocked} is being trained by process "
                                                 f"{os.getpid()} on {socket.gethostname()}; wait for it to end or "
                                                 f"stop it first")
    assert failures["pointmass-mtsac/seed2"].startswith("WorkerCrashedError: "), failures
    reference = one_by_one / "pointmass-mtsac" / "seed0"
    for name in ("metrics.jsonl", "events.jsonl"):
        assert (resumed / name).read_bytes() == (reference / name).read_bytes(), name
    # A resumed run appends to TensorBoard through a second writer; a run started over would hold one.
    assert len(list((resumed / "tb").glob("events.out.tfevents.*"))) == 2


def test_without_ray_the_sweep_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert cli.main(["sweep", *sweep_args(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "paco: error: paco sweep needs Ray: pip install -e '.[cluster]'\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (sweep_args("OUT", presets=("pointmass-mtsac", "nope")), "unknown preset 'nope'; `paco presets` lists them"),
    (sweep_args("OUT", seeds="3-1"), "bad --seeds '3-1': give a seed (4), a range (0-9) or a list of them (0,3,5)"),
    (sweep_args("OUT", seeds="0,x"), "bad --seeds '0,x'"),
    (sweep_args("OUT", seeds="0-2,1"), "bad --seeds '0-2,1': seed 1 appears twice"),
    (sweep_args("OUT", overrides=["--sac.batch-per-task", "0"]), "sac.batch_per_task must be positive, got 0"),
    (sweep_args("OUT", overrides=["--network.num-components", "3"]), "Unrecognized options: --network.num-components"),
    (sweep_args("OUT", overrides=["--seed", "3"]), "--seeds, not --seed, gives a sweep's seeds"),
    (["--presets", "pointmass-mtsac", "--out", "OUT"], "the following arguments are required: --seeds"),
    ([*sweep_args("OUT"), "--gpus-per-run", "-1"], "--gpus-per-run, --max-retries not negative"),
])
def test_bad_input_is_one_line_and_exit_2_before_anything_starts(args, message, tmp_path, capsys):
    args = [str(tmp_path / "out") if arg == "OUT" else arg for arg in args]
    assert cli.main(["sweep", *args]) == 2
    printed = capsys.readouterr()
    assert printed.err.startswith("paco: error: ") and message in printed.err and len(printed.err.splitlines()) == 1
    assert not printed.out and not (tmp_path / "out").exists()


def test_seeds_summary_and_error_lines():
    assert parse_seeds("0-3") == (0, 1, 2, 3) and parse_seeds("0,3,5") == (0, 3, 5) and parse_seeds("4") == (4,)
    assert parse_seeds("7,0-1") == (7, 0, 1)
    progress = [RunProgress("done", 4000, 4000), RunProgress("running", 1000, 4000),
                RunProgress("failed", 500, 4000), RunProgress("queued", 0, 4000)]
    # 5500 of 16000 env steps; 3000 of them trained in 30 s (100/s); the running and queued runs need 7000 more.
    assert summary_line(progress, 30.0, 2500) == ("1 done, 1 running, 1 failed, 1 queued; 5.5k of 16.0k env steps "
                                                  "(34%), ETA 1m10s")
    assert summary_line(progress, 0.0, 5500).endswith("ETA -")
    limit = RelaunchLimit("the critic loss exploded (1e+09 at env step 800) after 0 relaunches")
    assert last_error_line(limit) == f"RelaunchLimit: {limit}"


def test_logged_env_steps_reads_the_last_complete_line(tmp_path):
    assert logged_env_steps(tmp_path) == 0
    (tmp_path / "metrics.jsonl").write_text('{"env_steps": 400, "x": 1}\n{"env_steps": 800}\n{"env_st')
    assert logged_env_steps(tmp_path) == 800
