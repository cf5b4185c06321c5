"""Measure the zoo's speed, honestly: warm-up excluded, several repeats, medians.

    python benchmark.py --threads 1              # this CPU (the README's table)
    python benchmark.py --device cuda --batch-size 512 --precision bf16-mixed --channels-last --compile
    python benchmark.py --quick                  # lenet5 and resnet20, a few small steps (the test suite runs this)

(a) per model: training and inference throughput (images/s) on one batch
    held on the device, and the training steps' peak memory (CUDA:
    max_memory_allocated; CPU: growth of the process's peak RSS);
(b) the same training steps, model and data through our ImageClassifier and
    a lightning.Trainer set up as train.py sets it up (TensorBoard logger,
    progress bar) and through a plain PyTorch loop, interleaved in one run;
    the ratio of the median step times is Lightning's overhead;
(c) images/s of the tensor data path against the torchvision path (DataLoader
    with --workers processes, batches moved to the device) on the same data.
Data: CIFAR-10-shaped random uint8 images (what a step or a batch costs does
not depend on the pixels). Writes benchmark.md and benchmark.json into --out.

argparse rather than a Hydra entry point: a benchmark is a fixed protocol with
a few knobs of its own, and needs no run dir, sweeps or config groups on its
command line. It does read each model's config with Hydra's compose API, so a
model is built exactly as ``train.py model=<name>`` builds it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import io
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from datamodules import RandomImagesDataModule
from models import list_models
from training.cli import fail
from training.module import ImageClassifier
from training.performance import (MemoryPeak, PerformanceSwitches, StepClock, autocast, cpu_description,
                                  plain_training_steps, step_durations, synchronize)

CONFIGS = Path(__file__).resolve().parent / "configs"
MEMORY = ("training: peak RSS growth (MiB)", "training: peak allocated (MiB)")  # CPU, CUDA


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)


def zoo_model(name: str, args) -> nn.Module:
    """The model exactly as ``train.py model=<name>`` builds it (paper defaults from configs/model/)."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}", f"model.stem={args.stem}"])
    return instantiate(cfg.model, num_classes=10, in_channels=3)


def switched(net: nn.Module, args) -> nn.Module:
    return PerformanceSwitches(args.channels_last, args.compile).apply(net)


def model_throughput(name: str, args, device) -> dict:
    """(a) images/s training and inferring on one batch held on the device; peak memory of training."""
    torch.manual_seed(0)
    net, n = switched(zoo_model(name, args).to(device), args), args.warmup + args.steps
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    with MemoryPeak(device) as memory:
        train = plain_training_steps(net, [(x, y)] * (n + 1), sgd(net.parameters()), args.precision)
    net.eval()
    infer = []
    with torch.inference_mode(), autocast(device, args.precision):
        for _ in range(n + 1):
            net(x)
            synchronize(device)
            infer.append(time.perf_counter())
    rate = lambda times: args.batch_size / statistics.median(step_durations(times, args.warmup))  # noqa: E731
    return {"model": name, "params": sum(p.numel() for p in net.parameters()), "train_img_s": rate(train),
            "infer_img_s": rate(infer), "train_peak_mem_mib": memory.bytes / 2**20}


def lightning_vs_plain(name: str, args, device, datamodule) -> dict:
    """(b) median step time through ImageClassifier + Trainer and through a plain loop, interleaved."""
    torch.manual_seed(0)
    initial, loader, n = zoo_model(name, args), datamodule.train_dataloader(), args.warmup + args.steps
    plain, lightning = [], []
    for repeat in range(args.repeats):
        for path in (("plain", "lightning") if repeat % 2 == 0 else ("lightning", "plain")):
            net = switched(copy.deepcopy(initial).to(device), args)  # the same weights for both, every repeat
            if path == "plain":
                batches = (batch for _, batch in zip(range(n + 1), loader))
                times = plain_training_steps(net, batches, sgd(net.parameters()), args.precision)
                plain.append(statistics.median(step_durations(times, args.warmup)))
                continue
            clock = StepClock()
            quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
            with tempfile.TemporaryDirectory() as log_dir, quiet[0], quiet[1]:
                trainer = L.Trainer(  # as train.py builds it: TensorBoard, progress bar; checkpoints (per epoch) untimed
                    accelerator=device.type, devices=[device.index or 0] if device.type == "cuda" else 1,
                    precision=args.precision, max_steps=n + 1, logger=TensorBoardLogger(log_dir, name="", version=""),
                    callbacks=[clock], enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=50,
                )
                module = ImageClassifier(net, optimizer=functools.partial(sgd), num_classes=10)
                trainer.fit(module, train_dataloaders=loader)
            lightning.append(statistics.median(step_durations(clock.times, args.warmup)))
    p, q = statistics.median(plain), statistics.median(lightning)
    return {"model": name, "plain_ms": 1e3 * p, "lightning_ms": 1e3 * q, "ratio": q / p,
            "plain_repeats_ms": [1e3 * t for t in plain], "lightning_repeats_ms": [1e3 * t for t in lightning]}


def data_paths(datamodule: RandomImagesDataModule, args, device) -> dict:
    """(c) images/s of the training loader of each data path, on the same images."""
    rates = {}
    for pipeline in ("tensor", "torchvision"):
        datamodule.pipeline = pipeline
        loader, per_repeat = datamodule.train_dataloader(), []
        for _ in range(args.repeats):
            batches = iter(loader)
            for _, (x, _) in zip(range(args.warmup), batches):  # worker start-up excluded
                pass
            synchronize(device)
            start, images = time.perf_counter(), 0
            for x, y in batches:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                images += len(x)
            synchronize(device)
            per_repeat.append(images / (time.perf_counter() - start))
        rates[pipeline] = statistics.median(per_repeat)
    datamodule.pipeline = "tensor"
    return {"images": len(datamodule.train_set), "augment": datamodule.augment, "workers": args.workers,
            "tensor_img_s": rates["tensor"], "torchvision_img_s": rates["torchvision"],
            "speedup": rates["tensor"] / rates["torchvision"]}


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows] + [""]


def markdown(report: dict) -> str:
    env, s, d = report["environment"], report["settings"], report["data_paths"]
    lines = [
        f"Device: {env['device']} (load average {env['load_average_at_start']:.1f} at start, "
        f"{env['load_average_at_end']:.1f} at end); torch {env['torch']}, lightning {env['lightning']}; "
        f"torch threads: {s['threads']}; batch {s['batch_size']}, {s['image_size']}x{s['image_size']}, stem {s['stem']}, "
        f"precision {s['precision']}, channels_last {s['channels_last']}, compile {s['compile']}; "
        f"{s['warmup']} warm-up + {s['steps']} timed steps, median of {s['repeats']} repeats.", "",
    ]
    lines += table(["model", "params", "train img/s", "inference img/s", MEMORY[env["device_type"] == "cuda"]], [
        [r["model"], f"{r['params']:,}", f"{r['train_img_s']:,.0f}", f"{r['infer_img_s']:,.0f}",
         f"{r['train_peak_mem_mib']:,.0f}"] for r in report["models"]])
    lines += table(["model", "plain loop ms/step", "Lightning + ImageClassifier ms/step", "ratio"], [
        [r["model"], f"{r['plain_ms']:.1f}", f"{r['lightning_ms']:.1f}", f"{r['ratio']:.3f}"] for r in report["overhead"]])
    lines += table([f"data path (training loader, augment={d['augment']}, {d['images']:,} images)", "images/s"], [
        [f"tensor (on {env['device_type']})", f"{d['tensor_img_s']:,.0f}"],
        [f"torchvision ({d['workers']} workers)", f"{d['torchvision_img_s']:,.0f}"], ["speed-up", f"{d['speedup']:.1f}x"]])
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["lenet5", "resnet20", "resnet18", "mobilenet_v2", "vgg11_bn"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--stem", default="cifar", choices=["cifar", "imagenet"], help="model.stem (imagenet for 224x224)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads (default: all cores); 1 keeps timings steady on a shared CPU")
    parser.add_argument("--device", default="auto", help="auto (cuda if present) | cpu | cuda | cuda:1 ...")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile each model (compile time is warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of every timing")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-size", type=int, default=20000, help="images in the data set of (b) and (c)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="DataLoader workers of the torchvision path in (c) (default: 4 as in configs/data, <= cores)")
    parser.add_argument("--quick", action="store_true", help="lenet5 and resnet20, batch 16, 1+3 steps, 2 repeats, 1 thread")
    parser.add_argument("--out", default=None, help="output dir (default outputs/<date>_<time>_benchmark)")
    parser.error = fail  # one line, exit status 2
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(list_models()))
    if unknown:
        fail(f"--models {' '.join(unknown)}: unknown model; valid: {', '.join(list_models())}")
    if args.quick:
        args.models, args.batch_size, args.data_size = ["lenet5", "resnet20"], 16, 1024
        args.warmup, args.steps, args.repeats, args.threads = 1, 3, 2, 1  # one thread: steady on a busy CPU
    args.data_size = max(args.data_size, 2 * (args.warmup + args.steps + 2) * args.batch_size)  # (b) stays in one epoch
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no "GPU available" banners per repeat
    device = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out or f"outputs/{datetime.now():%Y-%m-%d_%H-%M-%S}_benchmark")
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description()
    environment = {"device": name, "device_type": device.type, "torch": torch.__version__, "lightning": L.__version__,
                   "python": platform.python_version(), "load_average_at_start": os.getloadavg()[0]}
    report = {"environment": environment, "settings": {k: v for k, v in vars(args).items() if k not in ("out", "quick")}}
    datamodule = RandomImagesDataModule(args.data_size, batch_size=args.batch_size, num_workers=args.workers)
    datamodule.device = device
    datamodule.setup()
    report["data_paths"] = data_paths(datamodule, args, device)
    report["models"] = [model_throughput(m, args, device) for m in args.models]
    report["overhead"] = [lightning_vs_plain(m, args, device, datamodule) for m in args.models]
    report["environment"]["load_average_at_end"] = os.getloadavg()[0]  # other processes on the machine skew timings
    (out / "benchmark.json").write_text(json.dumps(report, indent=2))
    (out / "benchmark.md").write_text(markdown(report))
    print(markdown(report) + f"\nwritten: {out / 'benchmark.md'}, {out / 'benchmark.json'}")
    return report


if __name__ == "__main__":
    main()
