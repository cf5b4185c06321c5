"""The lightning-hydra-template's debug presets and Trainer keys work here as they do there."""

from __future__ import annotations

import json
import re

import pytest

from helpers import run_script

# slow: one sweep of four debug runs, about 18 s. The presets set Lightning's own Trainer flags (fast_dev_run,
# limit_*_batches, overfit_batches, profiler); default: --help lists them (test_cli.py)
pytestmark = pytest.mark.slow

PRESETS = ("fdr", "limit", "overfit", "profiler")


@pytest.fixture(scope="module")
def debug_runs(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("debug")
    result = run_script("train.py", "-m", "experiment=smoke", f"debug={','.join(PRESETS)}", "logger=none",
                        f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra:runtime.choices.debug}")
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep, result


def epoch_losses(run_dir) -> list[float]:
    lines = (run_dir / "train.log").read_text().splitlines()
    return [float(m.group(1)) for m in (re.search(r"epoch \d+/\d+  train loss ([\d.]+)", line) for line in lines) if m]


def test_fast_dev_run_runs_one_batch_and_saves_nothing(debug_runs):
    sweep, _ = debug_runs
    assert len(epoch_losses(sweep / "fdr")) == 1
    assert not list((sweep / "fdr").rglob("*.ckpt"))


def test_limit_runs_three_short_epochs_and_tests(debug_runs):
    sweep, _ = debug_runs
    assert len(epoch_losses(sweep / "limit")) == 3
    metrics = json.loads((sweep / "limit" / "metrics.json").read_text())
    assert "test/acc" in metrics and metrics["epochs"] == 3


def test_overfit_memorizes_three_batches(debug_runs):
    sweep, _ = debug_runs
    losses = epoch_losses(sweep / "overfit")
    assert len(losses) == 50 and losses[-1] < losses[0] / 5, losses


def test_profiler_prints_its_report(debug_runs):
    _, result = debug_runs
    assert "Profiler Report" in result.stdout + result.stderr


def test_a_debugging_run_is_not_compared_as_completed(debug_runs):
    """fast_dev_run trains one batch and overfit_batches the same few: their numbers compare with nothing, so
    metrics.json says debug, and compare.py, reading any folder, lists them so rather than as completed."""
    import compare

    sweep, _ = debug_runs
    statuses = {name: json.loads((sweep / name / "metrics.json").read_text())["status"] for name in PRESETS}
    assert statuses == {"fdr": "debug", "limit": "completed", "overfit": "debug", "profiler": "completed"}
    for name in PRESETS:  # as a train.py run would look (the presets name their runs debug)
        config = sweep / name / ".hydra" / "config.yaml"
        config.write_text(config.read_text().replace("task_name: debug", "task_name: train"))
    rows = {row["run"]: row["status"] for row in compare.compare(sweep)}
    assert rows == statuses
