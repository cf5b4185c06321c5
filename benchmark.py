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
import functools
import json
import logging
import os
import platform
from datetime import datetime
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from datamodules import RandomImagesDataModule
from models import list_models
from training.benchmarking import cpu_description, data_paths, lightning_vs_plain, markdown, model_throughput
from training.cli import fail

CONFIGS = Path(__file__).resolve().parent / "configs"


def zoo_model(name: str, args) -> nn.Module:
    """The model exactly as ``train.py model=<name>`` builds it (paper defaults from configs/model/)."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}", f"model.stem={args.stem}"])
    return instantiate(cfg.model, num_classes=10, in_channels=3)


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
    report["models"] = [model_throughput(m, functools.partial(zoo_model, m, args), args, device) for m in args.models]
    report["overhead"] = [lightning_vs_plain(m, functools.partial(zoo_model, m, args), args, device, datamodule)
                          for m in args.models]
    report["environment"]["load_average_at_end"] = os.getloadavg()[0]  # other processes on the machine skew timings
    (out / "benchmark.json").write_text(json.dumps(report, indent=2))
    (out / "benchmark.md").write_text(markdown(report))
    print(markdown(report) + f"\nwritten: {out / 'benchmark.md'}, {out / 'benchmark.json'}")
    return report


if __name__ == "__main__":
    main()
