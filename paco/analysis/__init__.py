"""Analysis of finished and running experiments: `paco report` (multi-seed tables with the IQM and its
confidence interval) and `paco plot` (learning curves over seeds). It reads run directories only — config.json,
metrics.jsonl, the eval-*.json files of `paco evaluate` and the checkpoint names — so it works on runs copied from
other machines and on runs still training; the training loop never imports it.
"""
