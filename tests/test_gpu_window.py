"""gpu_window.py, the one command for a lent GPU window: its dry run on the CPU runs every part, tiny, so
that a lent window is never its first run; the report's format (window.md, window.json) is fixed here, for a
GPU's report too; airbench's data files are checked against the layout its loader reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import ROOT, run_script
from reporting.peer import PUBLISHED, write_airbench_data
from reporting.window import PARTS, markdown

CLASSES = ("cat", "dog", "frog")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A small image folder in ImageFolder layout: 3 classes, 40 training and 4 test JPEGs each, 32x32."""
    root = tmp_path_factory.mktemp("images")
    generator = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 4)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                # classes differ in brightness
                pixels = generator.integers(0, 256, (32, 32, 3), dtype=np.uint8) // (c + 1)
                Image.fromarray(pixels).save(root / split / name / f"{i:04d}.jpg", quality=90)
    return root


# slow: every part of a GPU window, tiny, about 70 s: run it before asking for the device (README Tests); the
#   report's format and the window's commands stay in the default suite
@pytest.mark.slow
def test_the_dry_run_runs_every_part_and_writes_the_report(images, tmp_path):
    out = tmp_path / "window"
    stray = ROOT / "gpu_window.log"  # Hydra's default job log, in the window's run dir: the working folder
    there = stray.exists()
    result = run_script("gpu_window.py", "window=dry_run", "device=cpu", f"data_root={images}",
                        f"out={out}", timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert there or not stray.exists(), "gpu_window.py wrote a log into the folder it was run from"
    report = json.loads((out / "window.json").read_text())
    parts = report["parts"]
    assert list(parts) == list(PARTS)
    assert {name: p["status"] for name, p in parts.items()} == {
        "data": "completed", "benchmark": "completed", "peer": "skipped", "speedrun": "completed", "zoo": "completed",
        "gpu_tests": "skipped", "compare": "completed"}
    assert "CUDA only" in parts["peer"]["reason"] and "need CUDA" in parts["gpu_tests"]["reason"]  # each skip says why
    assert parts["data"]["train_images"] == 120 and parts["data"]["test_images"] == 12
    # written on a CPU too
    assert sorted(p.name for p in (out / "peer" / "cifar10").iterdir()) == ["test.pt", "train.pt"]
    ratio = parts["benchmark"]["ratio"]
    assert [r["model"] for r in ratio] == ["lenet5"] and ratio[0]["ratio"] > 0 and ratio[0]["target"] == 0.7
    assert [r["k"] for r in parts["benchmark"]["packing"]["rows"]] == [1, 2]
    # k chosen from the packing measurement
    assert parts["zoo"]["runs_per_gpu"] == parts["benchmark"]["best_k"] in (1, 2)
    assert parts["speedrun"]["target"] == 0.94 and "fallback" in parts["speedrun"]["target_source"]  # no peer on a CPU
    assert parts["speedrun"]["run_status"] == "completed" and parts["speedrun"]["epochs"] == 1
    assert parts["zoo"]["completed"] == parts["zoo"]["runs"] == 2
    assert "| lenet5 |" in parts["compare"]["table"] and sorted(parts["compare"]["figures"]) == [
        f"zoo/{name}.png" for name in ("test_acc_vs_macs", "test_acc_vs_params", "test_acc_vs_wall_time", "val_acc")]
    assert all((out / "logs" / f"{name}.log").is_file() for name in ("benchmark", "speedrun", "zoo", "compare"))
    text = (out / "window.md").read_text()
    assert text.startswith("# GPU window: the CPU (") and "a dry run" in text.splitlines()[0]
    assert "python train.py -m experiment=compare_architectures hydra.sweeper.params=null seed=1,2 model=lenet5" in text
    assert "n_jobs=" in text and "**1 epochs**" in text


def gpu_report() -> dict:
    """What the window writes on a GPU, with made-up numbers: the format, not the figures, is under test."""
    mean = lambda m, s: {"mean": m, "std": s}  # noqa: E731
    gpu = {"name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.2, "driver": "580.159.04", "cuda": "13.0", "cudnn": 91900}
    packed = {"model": "resnet20", "batch_size": 128, "precision": "bf16-mixed", "channels_last": True, "seconds": 8,
              "rows": [{"k": k, "images_per_s": 10000.0 * s, "speedup": s}
                       for k, s in ((1, 1.0), (2, 1.7), (4, 2.4), (8, 2.5))]}
    parts = {name: {"status": "completed", "seconds": 10.0, "command": f"python {name}.py"} for name in PARTS}
    parts["data"].update(train_images=50000, test_images=10000)
    parts["benchmark"].update(batch_size=512, variant="fp32 eager", packing=packed, best_k=4, ratio=[
        {"model": "lenet5", "bare_img_s": 300000.0, "lightning_img_s": 225000.0, "ratio": 0.75, "target": 0.7,
         "syncs_per_step": 0.0},
        {"model": "resnet20", "bare_img_s": 27000.0, "lightning_img_s": 25000.0, "ratio": 0.93, "target": 0.9,
         "syncs_per_step": 0.0}])
    parts["peer"].update(runs=[{}] * 5, tta_acc=mean(0.925, 0.002), acc=mean(0.915, 0.003), seconds=mean(3.6, 0.05),
                         train_images=50000, test_images=10000, airbench="0.1.8", published=PUBLISHED)
    parts["speedrun"].update(target=0.925,
                             target_source="the peer's mean test accuracy with its test-time augmentation",
                             time_to_target_s=None, **{"test/acc": 0.895, "val/acc_best": 0.897}, epochs=20,
                             wall_time_s=41.6, train_images_per_s=21665.0, run_status="completed")
    parts["zoo"].update(runs=33, completed=33, epochs=4, models=["lenet5"] * 11, seeds=[1, 2, 3], runs_per_gpu=4,
                        runs_per_gpu_source="benchmark (f)")
    parts["gpu_tests"].update(passed=["test_a", "test_b"], failed=[], skipped=[])
    parts["compare"].update(table="| overrides | model |\n|---|---|", figures=["zoo/val_acc.png"])
    return {"command": "python gpu_window.py data_root=/tmp/cifar10-jpeg out=/tmp/window",
            "started": "2026-12-07T10:00:00", "elapsed_s": 540.0, "device": "cuda", "data_root": "/tmp/cifar10-jpeg",
            "settings": {}, "parts": parts,
            "machine": {"cpu": "Intel(R) Xeon(R) Processor (16 cores usable)", "torch": "2.11.0", "lightning": "2.6.6",
                        "python": "3.12.3", "gpu": gpu}}


def test_the_report_on_a_gpu_names_it_and_has_every_section_in_order():
    text = markdown(gpu_report())
    lines = text.splitlines()
    assert lines[0] == "# GPU window: NVIDIA H100 80GB HBM3 (79 GiB, driver 580.159.04, CUDA 13.0, cuDNN 91900)"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## Parts", "## The peer: airbench94 on this copy",
                        "## The speedrun, against the peer's accuracy",
                        "## The GPU step: train.py's Lightning step against the bare step", "## The zoo",
                        "## The gpu tests"]
    assert "| here | 0.9250 ± 0.0020 | 0.9150 ± 0.0030 | 3.60 ± 0.05 |" in text
    assert "| published (one NVIDIA A100, CIFAR-10 (the lossless originals)) | 0.9401 | — | 3.83 |" in text
    assert ("target 0.925 val accuracy (the peer's mean test accuracy with its test-time augmentation): "
            "did not reach it" in text)
    assert "The peer took 3.60 ± 0.05 s on the same GPU." in text
    assert ("| lenet5 | 300,000 | 225,000 | 0.75 | 0.70 | 0.00 |" in text
            and "| resnet20 | 27,000 | 25,000 | 0.93 | 0.90 | 0.00 |" in text)
    assert "| 4 | 24,000 | 2.40x |" in text and "k = 4." in text
    assert "33 of 33 runs completed" in text and "**4 epochs**" in text and "4 runs at once" in text
    assert "on NVIDIA H100 80GB HBM3" in text and "passed test_a, test_b; failed none" in text


def test_a_part_that_did_not_run_says_why_in_its_section():
    report = gpu_report()
    report["parts"]["peer"] = {"status": "skipped", "reason": "airbench is not installed here", "seconds": 0.0}
    report["parts"]["zoo"] = {"status": "failed", "error": "exit 1: see logs/zoo.log", "seconds": 3.0}
    text = markdown(report)
    assert "Not run: airbench is not installed here." in text and "Not run: exit 1: see logs/zoo.log." in text
    assert "| peer | skipped | 0.0 | airbench is not installed here |" in text


# airbench 0.1.8's own table (utils.py print_training_details), as `python -c "import airbench; ..."` prints it
AIRBENCH_OUTPUT = """
------------------------------------------------------------------------------------------------------
|  warmup  |         |              |             |           |               |                      |
------------------------------------------------------------------------------------------------------
|  run     |  epoch  |  train_loss  |  train_acc  |  val_acc  |  tta_val_acc  |  total_time_seconds  |
------------------------------------------------------------------------------------------------------
|       0  |      0  |      1.2346  |     0.6000  |   0.7000  |               |              1.5000  |
|          |      9  |      0.2000  |     0.9500  |   0.9345  |               |              3.1000  |
|          |   eval  |      0.2000  |     0.9500  |   0.9345  |       0.9402  |              3.8321  |
------------------------------------------------------------------------------------------------------
|       1  |      0  |      1.2201  |     0.6100  |   0.7100  |               |              1.4900  |
|          |   eval  |      0.2100  |     0.9400  |   0.9301  |       0.9376  |              3.8012  |
------------------------------------------------------------------------------------------------------
"""


def test_the_peers_own_table_is_read_back_run_by_run():
    from reporting.peer import command, parse

    read = parse(AIRBENCH_OUTPUT)
    assert read["runs"] == [{"tta_acc": 0.9402, "acc": 0.9345, "seconds": 3.8321},
                            {"tta_acc": 0.9376, "acc": 0.9301, "seconds": 3.8012}]
    assert (read["tta_acc"]["mean"] == pytest.approx(0.9389)
            and read["seconds"]["std"] == pytest.approx(0.02185, abs=1e-5))
    assert read["published"]["tta_acc"] == 0.9401
    assert command(5) == "import airbench; airbench.warmup94(); [airbench.train94(run=run) for run in range(5)]"
    with pytest.raises(ValueError, match="no final"):
        parse("Traceback (most recent call last): ...")


def test_airbench_files_have_the_layout_its_loader_reads(images, tmp_path):
    # airbench 0.1.8, utils.py CifarLoader: torch.load(<path>/train.pt) -> data['images'], data['labels'],
    # data['classes']; images uint8 (N, 32, 32, 3), made (N, 3, 32, 32) halves in [0, 1] by .half() / 255 and
    # .permute(0, 3, 1, 2)
    from datamodules import ImageFolderDataModule

    folder = ImageFolderDataModule(root=str(images), data_dir=str(tmp_path / "cache"), pipeline="tensor")
    train, _, test = folder.load()
    write_airbench_data(tmp_path / "cifar10",
                        {"train": (train.images, train.targets), "test": (test.images, test.targets)}, folder.classes)
    for split, source in (("train", train), ("test", test)):
        data = torch.load(tmp_path / "cifar10" / f"{split}.pt", map_location="cpu")  # torch's default: weights_only
        assert set(data) == {"images", "labels", "classes"} and data["classes"] == list(CLASSES)
        assert data["images"].dtype == torch.uint8 and data["images"].shape == (len(source), 32, 32, 3)
        assert data["labels"].dtype == torch.int64 and data["labels"].tolist() == source.targets.tolist()
        assert torch.equal(data["images"].permute(0, 3, 1, 2), source.images)  # the very pixels the zoo trains on
        as_airbench = (data["images"].half() / 255).permute(0, 3, 1, 2)
        assert (as_airbench.shape == (len(source), 3, 32, 32)
                and 0 <= float(as_airbench.min()) <= float(as_airbench.max()) <= 1)
    with pytest.raises(ValueError, match="uint8 32x32 RGB"):
        write_airbench_data(tmp_path / "other", {"train": (train.images.float(), train.targets)}, folder.classes)


@pytest.mark.parametrize("overrides, expected", [
    (["out={existing}"], "exists and is not an empty folder"),
    (["data_root={empty}"], "has no train/ and test/ folders"),
    (["speedrun.target=fast"], "speedrun.target='fast' is not valid"),
    (["zoo.runs_per_gpu=0"], "zoo.runs_per_gpu=0 is not valid"),
    (["device=tpu"], "device='tpu' is not valid; valid: cuda, cpu"),
])
def test_bad_input_is_one_line_before_anything_is_written(overrides, expected, images, tmp_path, capsys):
    from inprocess import run_entry

    existing, empty = tmp_path / "existing", tmp_path / "empty"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    empty.mkdir()
    argv = ["device=cpu", f"data_root={images}", f"out={tmp_path / 'new'}"]
    argv += [o.format(existing=existing, empty=empty) for o in overrides]
    code, err = run_entry("gpu_window.py", argv, capsys, stage="run")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert not (tmp_path / "new").exists() and [p.name for p in existing.iterdir()] == ["keep.txt"]


def test_cuda_is_asked_for_where_none_is_visible_in_one_line(images, tmp_path, capsys):
    from inprocess import run_entry

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    code, err = run_entry("gpu_window.py", [f"data_root={images}", f"out={tmp_path / 'w'}"], capsys, stage="run")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: device=cuda: no CUDA device is visible here"), err
    assert not (tmp_path / "w").exists()


def test_the_full_windows_commands_are_accepted_as_typed(images, tmp_path, monkeypatch):
    # on a GPU the zoo is one sweep of k joblib workers in device slots of one GPU, seed-major; that command, and the
    # benchmark's with the full window's overrides, pass the entry points' own command-line checks here
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from benchmark import check_benchmark
    from cli.commandline import check_sweep
    from reporting.window import Window

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("gpu_window", overrides=[f"data_root={images}", f"out={tmp_path / 'w'}"])
    window = Window(OmegaConf.to_container(cfg, resolve=True), tmp_path, "python gpu_window.py")
    window.report["parts"]["benchmark"] = {"status": "completed", "best_k": 4}
    calls = []
    monkeypatch.setattr(window, "command",
                        lambda name, argv, timeout, **kw: calls.append(argv) or {"status": "completed"})
    monkeypatch.setattr(window, "start_gpu_tests", lambda: None)
    zoo = window.zoo()
    argv = calls[0][1:]
    assert (argv[:3] == ["train.py", "-m", "experiment=compare_architectures"] and zoo["runs_per_gpu"] == 4
            and zoo["runs"] == 33)
    assert {"trainer=gpu_sweep", "trainer.devices='${device_slot:${hydra:sweep.dir},1,4}'", "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=4", "trainer.max_epochs=4", "performance.compile=false"} <= set(argv)
    assert argv.index("seed=1,2,3") < next(i for i, a in enumerate(argv) if a.startswith("model="))  # seed-major
    check_sweep(argv[1:], ROOT / "configs", "train", None)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        check_benchmark(compose("benchmark", overrides=["device=cuda", *cfg.benchmark.overrides]))
