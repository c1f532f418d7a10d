"""`paco bench` at tiny shapes: every figure is reported, and every figure is a positive finite number."""

import json
import math

from paco.bench import update_matmul_flops
from paco.cli import main
import pytest

from paco.config.methods import MTSACConfig
from paco.methods.compositional import Compositional

KEYS = {
    "peak_matmul_gflops",
    "update_mtsac_ms", "update_mtsac_gflop", "update_mtsac_gflops", "update_mtsac_pct_peak",
    "update_paco_ms", "update_paco_gflop", "update_paco_gflops", "update_paco_pct_peak",
    "paco_over_mtsac", "update_paco_output_mixing_ms", "composed_speedup_over_output_mixing",
    "act_ms", "env_steps_per_s",
    *(f"loop_s{s}_{figure}" for s in (1, 2) for figure in ("env_steps_per_s", "share_env", "share_update",
                                                           "share_host")),
    "apart_s2_env_steps_per_s", "loop_s2_over_apart",
}


def test_bench_reports_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--tasks", "2", "--batch-per-task", "8", "--hidden", "32", "--components", "2",
            "--repeats", "2", "--suite", "pointmass", "--vector-steps", "5", "--matmul-size", "64",
            "--methods", "film,pcgrad", "--loop-seeds", "1,2", "--json", str(out)]
    assert main(args) == 0
    figures = json.loads(out.read_text())
    others = {"update_film_ms", "film_over_mtsac", "update_pcgrad_ms", "pcgrad_over_mtsac"}
    assert set(figures) == KEYS | others
    for key, value in figures.items():
        assert math.isfinite(value) and value > 0, (key, value)
    shares = [figures[f"loop_s2_share_{part}"] for part in ("env", "update", "host")]
    assert sum(shares) == pytest.approx(1.0)
    out = capsys.readouterr().out
    assert "training loop" in out and "2 processes of one seed" in out


def test_mtsac_matmul_count_by_hand():
    """One task, one sample, obs 2, action 1, one hidden layer of 3: every term written out."""
    nets = Compositional.build(MTSACConfig(hidden=(3,)), 1, 2, 1)
    # actor: in 2 + 1 (one-hot) = 3 → 3 → 2; critic: in 2 + 1 + 1 (action) = 4 → 3 → 1
    actor_fwd, critic_fwd = 2 * (3 * 3 + 3 * 2), 2 * (4 * 3 + 3 * 1)
    expected = (actor_fwd                                     # next actor
                + 2 * critic_fwd                              # target critics
                + 2 * (3 * critic_fwd - 2 * 4 * 3)            # critics: no input grad of layer 1
                + 3 * actor_fwd - 2 * 3 * 3                   # actor: no input grad of layer 1
                + 2 * (2 * critic_fwd - 2 * 4 * 3 + 2 * 1 * 3))  # through critics: layer 1's action column
    assert update_matmul_flops(nets, batch_per_task=1)["total"] == expected


@pytest.mark.parametrize("args,message", [
    (["--tasks", "0"], "--tasks must be positive, got 0"),
    (["--hidden", "0"], "--hidden must be positive, got 0"),
    (["--tasks", "51"], "--tasks is at most 50"),
    (["--methods", "paco,moe"], "unknown method 'moe' for --methods; known: all, mtsac"),
    (["--suite", "nope"], "unknown Meta-World task nope-v3"),
])
def test_bench_rejects_bad_options_in_one_line(args, message, capsys):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paco: error: ") and message in err and err.count("\n") == 1, err
