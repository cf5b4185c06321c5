"""The lightning-hydra-template's debug presets and Trainer keys work here as they do there."""

from __future__ import annotations

import json
import re

import pytest

from helpers import run_script

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
