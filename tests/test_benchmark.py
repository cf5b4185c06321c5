"""benchmark.py end to end, in a small quick mode: the machine, its peak, the tables, as markdown and JSON.
(Speed targets are read off the benchmark's own output, never asserted in a timed test.)"""

from __future__ import annotations

import json
import math

import pytest

from helpers import run_script

SMALL = ("quick=true", "batch_sizes=[16]", "data_size=1024", "threads=1")  # one thread: steady on a shared CPU


def test_quick_benchmark_reports_the_machine_its_peak_and_every_table(tmp_path):
    written = tmp_path / "reports" / "cpu.md"  # report=: the markdown where asked, the JSON beside it
    result = run_script("benchmark.py", *SMALL, f"report={written}", f"hydra.run.dir={tmp_path / 'run'}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(written.with_suffix(".json").read_text())
    machine, peak = report["machine"], report["peak"]
    assert machine["cpu"]["cores_usable"] >= 1 and machine["torch_threads"] == 1 and machine["device_type"] == "cpu"
    assert peak["measured"]["fp32"] > 0
    assert [r["model"] for r in report["models"]] == ["lenet5", "resnet20"]
    for row in report["models"]:
        assert row["train_img_s"] > 0 and row["infer_img_s"] > 0 and row["train_peak_mem_mib"] >= 0
        assert row["batch_size"] == 16 and row["variant"] == "fp32 eager"
    assert [r["params"] for r in report["models"]] == [62006, 269722]
    resnet20 = report["models"][1]["train_flops_per_image"]
    assert math.isclose(resnet20, 6 * 40.55e6, rel_tol=0.01)  # 6 x its MACs (README: 40.55 M)
    assert [r["model"] for r in report["paths"]["rows"]] == ["lenet5", "resnet20"]
    for row in report["paths"]["rows"]:
        for path in ("bare", "lightning", "torchvision"):
            assert row[f"{path}_ms"] > 0 and len(row[f"{path}_repeats_ms"]) == 2
            assert math.isclose(row[f"{path}_img_s"], 16e3 / row[f"{path}_ms"], rel_tol=1e-9)
    assert "defaults" not in report and "speedrun" not in report  # quick: neither
    paths = report["data_paths"]
    assert paths["tensor_img_s"] > 0 and paths["torchvision_img_s"] > 0
    markdown = written.read_text()
    assert markdown.startswith("Machine: CPU ") and "Peak: measured sgemm fp32" in markdown
    assert "| resnet20 | fp32 eager | 16 | 269,722 |" in markdown and "torchvision loop img/s" in markdown
    assert "of peak" in markdown and "speed-up" in markdown and report["machine"]["torch"] in markdown


@pytest.mark.parametrize("override, expected", [
    ("models=[resnet999]", "resnet999: unknown model; valid:"),
    ("device=cuda", "device=cuda: no CUDA device is visible here"),
])
def test_bad_input_is_one_line(override, expected, tmp_path):
    import torch

    if override.startswith("device") and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    result = run_script("benchmark.py", override, f"hydra.run.dir={tmp_path}", timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ") and expected in result.stderr


def test_the_runs_per_device_chosen_from_packing_are_the_fewest_within_5_percent_of_the_best():
    from reporting.benchmarking import best_k

    rows = lambda *rates: {"rows": [{"k": k, "images_per_s": r} for k, r in zip((1, 2, 4, 8), rates)]}  # noqa: E731
    assert best_k(rows(1000, 1800, 2500, 2600)) == 4  # 2500 is within 5 % of 2600: half the processes
    assert best_k(rows(1000, 1800, 2000, 2600)) == 8
    assert best_k(rows(1000, 900, 800, 700)) == 1  # packing does not pay
    assert best_k(rows(1000, None, 2500, None)) == 4  # a k whose runs failed is not chosen
    assert best_k(rows(None, None, None, None)) is None
