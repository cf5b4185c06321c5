"""benchmark.py end to end, in a small quick mode: the machine, its peak, the tables, as markdown and JSON.
(Speed targets are read off the benchmark's own output, never asserted in a timed test.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from inprocess import run_entry, run_entry_output

SMALL = ("quick=true", "batch_sizes=[16]", "data_size=1024", "threads=1")  # one thread: steady on a shared CPU
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_quick_benchmark_reports_the_machine_its_peak_and_every_table(tmp_path, capsys):
    written = tmp_path / "reports" / "cpu.md"  # report=: the markdown where asked, the JSON beside it
    from core.hardware import cpu_has_amx_bf16

    # models= with quick=true: the command line's models (in its order), quick's protocol
    code, stdout, stderr = run_entry_output("benchmark.py", [*SMALL, "models=[resnet20,lenet5]", f"report={written}",
                                                             f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    assert code == 0, stderr[-3000:]
    report = json.loads(written.with_suffix(".json").read_text())
    machine, peak = report["machine"], report["peak"]
    assert machine["cpu"]["cores_usable"] >= 1 and machine["torch_threads"] == 1 and machine["device_type"] == "cpu"
    assert peak["measured"]["fp32"] > 0 and report["settings"]["warmup"] == 1
    variants = ["fp32 eager"] + (["bf16 + channels_last"] if cpu_has_amx_bf16() else [])  # bf16 where the CPU has AMX
    assert [(r["variant"], r["model"]) for r in report["models"]] == [(v, m) for v in variants
                                                                      for m in ("resnet20", "lenet5")]
    assert ("bf16" in peak["measured"]) == cpu_has_amx_bf16()
    for row in report["models"]:
        assert row["train_img_s"] > 0 and row["infer_img_s"] > 0 and row["train_peak_mem_mib"] >= 0
        assert row["batch_size"] == 16
    assert [r["params"] for r in report["models"]][:2] == [269722, 62006]
    resnet20 = report["models"][0]["train_flops_per_image"]
    assert math.isclose(resnet20, 6 * 40.55e6, rel_tol=0.01)  # 6 x its MACs (README: 40.55 M)
    assert [r["model"] for r in report["paths"]["rows"]] == ["resnet20", "lenet5"]
    for row in report["paths"]["rows"]:
        for path in ("bare", "lightning", "torchvision"):
            assert row[f"{path}_ms"] > 0 and len(row[f"{path}_repeats_ms"]) == 2
            assert math.isclose(row[f"{path}_img_s"], 16e3 / row[f"{path}_ms"], rel_tol=1e-9)
    assert "defaults" not in report and "speedrun" not in report  # quick: neither
    paths = report["data_paths"]
    assert paths["tensor_img_s"] > 0 and paths["torchvision_img_s"] > 0
    markdown = written.read_text()
    assert markdown.startswith("Machine: CPU ") and "Peak: measured fp32 " in markdown
    assert "| resnet20 | fp32 eager | 16 | 269,722 |" in markdown and "torchvision loop img/s" in markdown
    assert "of peak" in markdown and "speed-up" in markdown and report["machine"]["torch"] in markdown


@pytest.mark.parametrize("override, expected", [
    ("models=[resnet999]", "resnet999: unknown model; valid:"),
    ("device=cuda", "device=cuda: no CUDA device is visible here"),
])
def test_bad_input_is_one_line(override, expected, tmp_path, capsys):
    """In this process (tests/inprocess.py), as the test above; benchmark.py's __main__ as a process of its own:
    tests/test_cli.py (--help)."""
    import torch

    if override.startswith("device") and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    code, err = run_entry("benchmark.py", [override, f"hydra.run.dir={tmp_path}"], capsys, stage="run")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: ") and expected in err


def benchmark_settings(*overrides: str, amx: bool = False, monkeypatch=None):
    """benchmark.py's settings as its task function derives them from this command line."""
    from hydra import compose, initialize_config_dir

    import benchmark

    benchmark.import_heavy()  # what main() does first: torch, the zoo's registry
    monkeypatch.setattr(benchmark, "cpu_has_amx_bf16", lambda: amx)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="benchmark", overrides=list(overrides))
    return benchmark.settings(cfg, benchmark.command_line_keys(list(overrides)))


def test_quick_keeps_what_the_command_line_sets(monkeypatch):
    quick = benchmark_settings("quick=true", "device=cpu", monkeypatch=monkeypatch)
    assert quick.models == ["lenet5", "resnet20"] and (quick.warmup, quick.steps, quick.repeats) == (1, 3, 2)
    given = benchmark_settings("quick=true", "models=[densenet_bc_100]", "repeats=5", "device=cpu",
                               monkeypatch=monkeypatch)
    assert given.models == ["densenet_bc_100"] and given.repeats == 5 and (given.warmup, given.steps) == (1, 3)
    assert not given.defaults_check["enabled"]


@pytest.mark.parametrize("amx, expected", [
    (True, [("fp32 eager", "32-true", False), ("bf16 + channels_last", "bf16-mixed", True)]),
    (False, [("fp32 eager", "32-true", False)]),  # avx512_bf16 alone or none: bf16 does not pay
])
def test_a_cpu_with_amx_adds_a_bf16_channels_last_variant(amx, expected, monkeypatch):
    monkeypatch.setattr("core.hardware.cpu_flags", lambda: {"avx512_bf16", "amx_bf16"} if amx else {"avx512_bf16"})
    s = benchmark_settings("device=cpu", amx=amx, monkeypatch=monkeypatch)
    assert [(v["name"], v["precision"], v["channels_last"]) for v in s.variants] == expected


def test_the_cpu_peak_is_labelled_nominal_and_each_model_is_a_fraction_of_its_precisions_peak():
    from reporting.benchmarking import markdown

    cpu = {"model": "Xeon", "vendor": "GenuineIntel", "family": 6, "flags": ["amx_bf16"], "bf16": True,
           "cores_usable": 2, "cores_total": 2, "mhz": 2600.0, "fp32_flops_per_cycle": 64, "bf16_flops_per_cycle": 1024}
    variants = [{"name": "fp32 eager", "precision": "32-true"},
                {"name": "bf16 + channels_last", "precision": "bf16-mixed"}]
    row = {"model": "resnet20", "batch_size": 128, "params": 269722, "train_img_s": 1000.0, "infer_img_s": 1.0,
           "train_peak_mem_mib": 1.0, "train_flops_per_image": 1e8}  # 100 GFLOP/s
    paths = {"model": "resnet20", **{f"{p}_{k}": 1.0 for p in ("bare", "lightning", "torchvision")
                                     for k in ("ms", "img_s")}}
    report = {"machine": {"cpu": cpu, "torch_threads": 2, "gpu": None, "device_type": "cpu", "torch": "2",
                          "lightning": "2", "python": "3", "load_average_at_start": 0.0, "load_average_at_end": 0.0},
              "peak": {"measured": {"fp32": 400.0, "bf16": 2000.0}, "measured_size": {"fp32": 1024, "bf16": 2048},
                       "theoretical": {"fp32": 332.8, "bf16": 5324.8}},
              "settings": {"variants": variants, "warmup": 1, "steps": 3, "repeats": 2, "image_size": 32,
                           "stem": "cifar"},
              "models": [{**row, "variant": "fp32 eager"}, {**row, "variant": "bf16 + channels_last"}],
              "paths": {"variant": "fp32 eager", "batch_size": 128, "rows": [paths]},
              "data_paths": {"images": 1, "augment": "standard", "workers": 2, "tensor_img_s": 1.0,
                             "torchvision_img_s": 1.0, "speedup": 1.0}}
    text = markdown(report)
    peak = next(line for line in text.splitlines() if line.startswith("Peak:"))
    assert "theoretical" not in peak and "nominal (at the 2.60 GHz" in peak
    assert "fp32 400 GFLOP/s (1024x1024 matrix product), bf16 2,000 GFLOP/s (2048x2048 matrix product)" in peak
    assert ("fp32 333 GFLOP/s (64 FLOP/cycle of FMA x 2 threads), "
            "bf16 5,325 GFLOP/s (1,024 FLOP/cycle of AMX x 2 threads)" in peak)
    assert "| resnet20 | fp32 eager | 128 | 269,722 | 1,000 | 100.0 | 25% |" in text  # of the fp32 sgemm
    assert "| resnet20 | bf16 + channels_last | 128 | 269,722 | 1,000 | 100.0 | 5% |" in text  # of the bf16 matmul


def test_the_runs_per_device_chosen_from_packing_are_the_fewest_within_5_percent_of_the_best():
    from reporting.benchmarking import best_k

    rows = lambda *rates: {"rows": [{"k": k, "images_per_s": r} for k, r in zip((1, 2, 4, 8), rates)]}  # noqa: E731
    assert best_k(rows(1000, 1800, 2500, 2600)) == 4  # 2500 is within 5 % of 2600: half the processes
    assert best_k(rows(1000, 1800, 2000, 2600)) == 8
    assert best_k(rows(1000, 900, 800, 700)) == 1  # packing does not pay
    assert best_k(rows(1000, None, 2500, None)) == 4  # a k whose runs failed is not chosen
    assert best_k(rows(None, None, None, None)) is None
