"""Adding a model family is one model file, its YAML and its test: in a copy of the repo,
a toy family's file and YAML (and nothing else) make it a model train.py can train."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from helpers import ROOT

TOY = textwrap.dedent('''
    """A toy family: average-pool to width x width, then one linear layer."""
    from torch import nn

    from .layers import variants


    def toy(*, num_classes: int = 10, in_channels: int = 3, activation: str = "relu", batchnorm: bool = False,
            dropout: float = 0.0, stem: str = "cifar", width: int = 4) -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool2d(width), nn.Flatten(),
                             nn.Linear(in_channels * width * width, num_classes))


    MODELS = variants(toy)
    PAPER = {"title": "A toy for the registry's test", "year": 2025}
''')
# only what differs from the builder: the width; its other options are keys of the base (null: the builder's)
TOY_YAML = "defaults:\n  - /_base/model@_here_\n  - _self_\n\nname: toy\nwidth: 2\n"
LEFT_OUT = {".git", ".venv", "outputs", "multirun", "data", "weights"}  # at the top of the checkout only


# slow: a copy of the repository and a run in it, about 9 s: run it after a change to models/__init__.py or the
#   registry
@pytest.mark.slow
def test_a_new_family_is_its_file_and_its_yaml(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=lambda folder, names: [
        n for n in names if n == "__pycache__" or (folder == str(ROOT) and (n in LEFT_OUT or n.startswith("$")))])
    (copy / "models" / "toy.py").write_text(TOY)
    (copy / "configs" / "model" / "toy.yaml").write_text(TOY_YAML)
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "train.py", "model=toy", "data=digits", "data.batch_size=16", "trainer.max_epochs=1",
         "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
         "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"],
        cwd=copy, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["params"] == 1 * 2 * 2 * 10 + 10  # digits: 1 channel; width 2
    assert "name: toy" in (run_dir / ".hydra" / "config.yaml").read_text()
