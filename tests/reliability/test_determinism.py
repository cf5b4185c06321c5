"""The same seed with trainer.deterministic=true gives the same run twice on a CPU:
the same validation and test metrics and bit-identical weights."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import run_script


# slow: a second run, about 9 s; default: reliability/test_resume.py, whose killed run and whole run, two processes
#   with one seed, must agree bit for bit
@pytest.mark.slow
def test_same_seed_same_metrics_and_weights(tiny_run, tiny_args, tmp_path):
    first, _ = tiny_run
    second = tmp_path / "again"
    result = run_script("train.py", *tiny_args, f"hydra.run.dir={second}")
    assert result.returncode == 0, result.stderr[-3000:]

    a, b = (json.loads((run / "metrics.json").read_text()) for run in (first, second))
    shown = [k for k in a if k.startswith(("val/", "test/"))]
    assert {"val/acc", "val/loss", "test/acc", "test/loss"} <= set(shown)
    assert {k: a[k] for k in shown} == {k: b[k] for k in shown}

    wa, wb = (torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
              for run in (first, second))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
