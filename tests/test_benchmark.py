"""benchmark.py end to end, in its quick mode: the three tables, as markdown and JSON.
(Speed targets are read off the benchmark's own output, never asserted in a timed test.)"""

from __future__ import annotations

import json
import math

import pytest

from helpers import run_script


def test_quick_benchmark_writes_every_table(tmp_path):
    result = run_script("benchmark.py", "--quick", "--out", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert [r["model"] for r in report["models"]] == ["lenet5", "resnet20"]
    for row in report["models"]:
        assert row["train_img_s"] > 0 and row["infer_img_s"] > 0 and row["train_peak_mem_mib"] >= 0
    assert [r["params"] for r in report["models"]] == [62006, 269722]
    for row in report["overhead"]:
        assert row["plain_ms"] > 0 and row["lightning_ms"] > 0
        assert math.isclose(row["ratio"], row["lightning_ms"] / row["plain_ms"], rel_tol=1e-9)
        assert len(row["plain_repeats_ms"]) == len(row["lightning_repeats_ms"]) == 2
    paths = report["data_paths"]
    assert paths["tensor_img_s"] > 0 and paths["torchvision_img_s"] > 0
    markdown = (tmp_path / "benchmark.md").read_text()
    assert "| resnet20 | 269,722 |" in markdown and "plain loop ms/step" in markdown and "speed-up" in markdown
    assert report["environment"]["torch"] in markdown


def test_an_unknown_model_is_one_line_with_the_valid_ones(capsys):
    import benchmark

    with pytest.raises(SystemExit) as exit_:
        benchmark.parse_args(["--models", "resnet999"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "resnet999" in err and "lenet5" in err
