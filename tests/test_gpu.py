"""The GPU path, for the first GPU the tests meet: skipped without CUDA, never faked.

    python -m pytest -m gpu          # on a machine with a CUDA GPU (a few minutes)

ResNet-20 trained two epochs with trainer=gpu (bf16) and performance=fast (channels_last,
torch.compile, cudnn.benchmark, TF32) over the tensor pipeline on the real CIFAR-10 JPEGs,
its checkpoint evaluated on the CPU; bf16 autocast and channels_last checked in effect
inside the network; benchmark.py's quick mode on CUDA.
"""

from __future__ import annotations

import functools
import json
import os
import tarfile
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from helpers import SHARED_DATA, final_metrics, run_script
from models import create_model
from training.module import ImageClassifier
from training.performance import PerformanceSwitches

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs a CUDA GPU; none is visible")]
ARCHIVE = SHARED_DATA / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    # the extracted copy, where the archive is not beside the checkout (gpu_window.py)
    if os.environ.get("ZOO_DATA_ROOT"):
        return Path(os.environ["ZOO_DATA_ROOT"])
    if not ARCHIVE.is_file():
        pytest.skip(f"{ARCHIVE} is not here (it sits in ../shared/data/ beside the checkout)")
    root = tmp_path_factory.mktemp("cifar10-jpeg")
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(root, filter="data")
    return next(path.parent for path in root.rglob("train") if path.is_dir())


def test_two_epochs_on_the_gpu_with_every_switch_then_the_checkpoint_on_the_cpu(cifar10, tmp_path):
    run_dir = tmp_path / "run"
    data = (f"data.root={cifar10}", f"paths.data_dir={tmp_path / 'cache'}")
    trained = run_script("train.py", "model=resnet20", "trainer=gpu", "performance=fast", "data=image_folder", *data,
                         "data.pipeline=tensor", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
                         f"hydra.run.dir={run_dir}", timeout=1200)
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert metrics["test/acc"] > 0.45  # two epochs of ResNet-20 reach about 0.6; a broken run stays near 0.1
    config = json.loads(json.dumps(
        torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["config"]))
    assert (config["trainer"]["precision"], config["performance"]["channels_last"],
            config["performance"]["compile"]) == ("bf16-mixed", True, True)
    evaluated = run_script("evaluate.py", f"ckpt_path={run_dir}", "trainer=cpu", f"data.root={cifar10}",
                           f"data.data_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'eval'}",
                           timeout=1200)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    on_cpu = final_metrics(evaluated.stdout)["test/acc"]
    assert abs(on_cpu - metrics["test/acc"]) < 0.02  # the same weights, in fp32 on the CPU instead of bf16 on the GPU


class Inside(L.Callback):
    """What the first convolution sees and makes during a training step."""

    def on_fit_start(self, trainer, pl_module):
        conv = next(m for m in pl_module.net.modules() if isinstance(m, torch.nn.Conv2d))
        self.weight_channels_last = conv.weight.is_contiguous(memory_format=torch.channels_last)
        self.seen = []
        conv.register_forward_hook(lambda m, args, out: self.seen.append(
            (args[0].device.type, args[0].is_contiguous(memory_format=torch.channels_last),
             args[0].is_contiguous(), out.dtype)))


@pytest.mark.parametrize("precision, dtype", [("bf16-mixed", torch.bfloat16), ("32-true", torch.float32)])
def test_bf16_and_channels_last_are_in_effect_inside_the_network(precision, dtype):
    net = create_model("resnet20", num_classes=10, in_channels=3)
    module = ImageClassifier(net, optimizer=functools.partial(torch.optim.SGD, lr=0.01), num_classes=10)
    data = DataLoader(TensorDataset(torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))), batch_size=16)
    inside = Inside()
    trainer = L.Trainer(accelerator="gpu", devices=1, precision=precision, max_steps=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[PerformanceSwitches(channels_last=True, cudnn_benchmark=True,
                                                       matmul_precision="high"), inside])
    trainer.fit(module, train_dataloaders=data)
    assert inside.weight_channels_last
    device, channels_last, contiguous, out_dtype = inside.seen[0]
    assert device == "cuda" and channels_last and not contiguous  # NHWC in memory, not NCHW
    assert out_dtype == dtype  # autocast really ran the convolution in bf16


def test_the_benchmark_on_cuda(tmp_path):
    result = run_script("benchmark.py", "device=cuda", "quick=true", f"hydra.run.dir={tmp_path}", timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["machine"]["gpu"]["name"] and report["machine"]["gpu"]["cuda"]
    assert report["peak"]["measured"]["fp32"] > 0 and report["peak"]["measured"]["bf16"] > 0
    cells = {(r["model"], r["variant"], r["batch_size"]) for r in report["models"]}
    assert cells == {(m, v, b) for m in ("lenet5", "resnet20") for b in (256, 512)
                     for v in ("fp32 eager", "bf16 + channels_last + compile")}
    assert all(r["train_peak_mem_mib"] > 0 for r in report["models"])  # GPU memory, max_memory_allocated
    assert "GPU: " in (tmp_path / "benchmark.md").read_text()
