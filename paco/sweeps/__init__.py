"""Many runs at once: `paco sweep` trains presets × seeds as Ray tasks (`pip install -e '.[cluster]'`)."""

from paco.sweeps.sweep import PlannedRun, SweepSettings, main, parse_seeds, parse_sweep_args, plan_runs, run_sweep

__all__ = ["PlannedRun", "SweepSettings", "main", "parse_seeds", "parse_sweep_args", "plan_runs", "run_sweep"]
