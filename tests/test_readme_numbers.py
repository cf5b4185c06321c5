"""The README's cheap numbers, rerun with the commands it states them with and compared with the README's own
text (so a number edited there is checked there): compare.py's example table and the overfitting diagnostic
(the smoke run's table: tests/test_train_evaluate.py, in the default suite). Minutes on two cores: marked slow
(``python -m pytest -m slow``)."""

from __future__ import annotations

import json
import re

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import ROOT, run_script

pytestmark = pytest.mark.slow
README = (ROOT / "README.md").read_text()


def test_compare_py_prints_the_readmes_example_table(tmp_path):
    sweep = run_script("train.py", "-m", "experiment=smoke", "optimizer=sgd,adam", "seed=1,2", "trainer.max_epochs=2",
                       cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "multirun").iterdir()
    compared = run_script("compare.py", f"dir={sweep_dir}", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr[-3000:]
    example = README[README.index("Example (`python train.py -m experiment=smoke optimizer=sgd,adam"):]
    rows = [line for line in example.splitlines() if line.startswith("| optimizer=")][:2]
    assert len(rows) == 2
    table = compared.stdout.splitlines()
    for row in rows:  # the README leaves out the last two columns (wall time, images/s)
        assert any(line.startswith(row) for line in table), (row, compared.stdout[:2000])


def test_the_overfitting_diagnostic_gives_the_readmes_numbers(tmp_path):
    result = run_script("train.py", "experiment=smoke", "data.val_size=0.9", "trainer.max_epochs=40",
                        "callbacks=diagnostics", f"hydra.run.dir={tmp_path}", timeout=3600)  # a minute on a quiet CPU
    assert result.returncode == 0, result.stderr[-3000:]
    stated = re.search(r"train acc ([\d.]+) against val acc ([\d.]+) \(gap \+([\d.]+), from −([\d.]+) in the first\s+"
                       r"epoch\); train loss ([\d.]+) against val loss ([\d.]+) \(test acc ([\d.]+)\)\.", README)
    assert stated, "the README's overfitting sentence"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    first_gap = events.Scalars("watch/generalization_gap")[0].value
    measured = [metrics["train/acc"], metrics["val/acc"], metrics["watch/generalization_gap"], -first_gap,
                metrics["train/loss"], metrics["val/loss"], metrics["test/acc"]]
    for text, value in zip(stated.groups(), measured):
        digits = len(text.split(".")[1])
        assert f"{value:.{digits}f}" == text, (stated.groups(), measured)
