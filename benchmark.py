"""Measure the zoo's speed against the machine it runs on: warm-up excluded, repeats, medians.

    python benchmark.py quick=true threads=1        # lenet5, resnet20: the README's table (the tests run a smaller one)
    python benchmark.py quick=true models=[densenet_bc_100]   # quick's protocol, other models: the command line wins
    python benchmark.py                             # five models and the defaults against performance=off
    python benchmark.py device=cuda report=gpu.md   # a GPU: everything below plus the speedrun, in one report

The report names the machine (CPU model, flags, cores, torch threads, memory
allocator; GPU name, driver, CUDA) and its peak (measured matrix products; a
GPU's data sheet, a CPU's nominal clock), then, each model built as ``train.py
model=<name>`` builds it, on CIFAR-10-shaped random images:
(a) per variant (precision, channels_last, compile; bf16 + channels_last on a
    CPU with AMX) and batch size: images/s of the bare training step on one
    batch held on the device, its GFLOP/s (6 x MACs per image) as a fraction
    of the measured peak of its precision, inference images/s, memory;
(b) the same step three ways, interleaved so their ratios hold on any machine:
    bare, ImageClassifier + lightning.Trainer over the tensor pipeline (as
    train.py runs it), a plain torchvision DataLoader loop; the data time;
(c) images/s of the two data paths alone ((b) and (c): paths_check);
(d) the Lightning step of ResNet-20 with performance=off (the defaults
    before issue 15) against performance=default, interleaved;
(e) on CUDA, the speedrun: train.py experiment=speedrun, time to 94 %;
(f) packing.enabled: images/s of k runs at once on one device (k processes).
Writes benchmark.md (or ``report``) and benchmark.json into the run dir.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import platform
import re
from pathlib import Path
from types import SimpleNamespace

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from cli.commandline import entry_point
from cli.validation import check_run
from core.errors import UserError, user_errors_as_lines
from core.files import write_text
from core.hardware import MAX_IMAGE_SIZE, cpu, cpu_has_amx_bf16


def is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_benchmark(cfg: DictConfig) -> None:
    """benchmark.py's settings whose bad value would fail deep inside a measurement, or allocate gigabytes
    (``image_size=30000``), before anything runs: one line naming the value and what would be valid."""
    def count(key: str, low: int, high: float = math.inf) -> None:
        value = cfg[key]
        if not (is_integer(value) and low <= value <= high):
            raise UserError(f"{key}={value!r} is not valid: it must be an integer in [{low}, {high:g}]")

    if cfg.threads is not None:
        count("threads", 1, 4096)
    if cfg.batch_sizes is not None and (not OmegaConf.is_list(cfg.batch_sizes) or not len(cfg.batch_sizes)
                                        or not all(is_integer(b) and 1 <= b <= 65536 for b in cfg.batch_sizes)):
        raise UserError(f"batch_sizes={cfg.batch_sizes!r} is not valid: it must be null or a list of integers "
                        "in [1, 65536], e.g. [128]")
    count("image_size", 8, MAX_IMAGE_SIZE)
    for key, low in (("warmup", 0), ("steps", 1), ("repeats", 1), ("data_size", 1), ("workers", 0)):
        count(key, low)
    if not (isinstance(cfg.device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device)):
        raise UserError(f"device={cfg.device!r} is not valid: it must be auto, cpu, cuda or cuda:<index>")


def import_heavy() -> None:
    """torch, Lightning, the zoo and the harness, imported once the command line is checked (in main):
    --help and a mistyped key answer before them. They are this module's globals from then on."""
    global L, torch, RandomImagesDataModule, list_models, ALLOCATOR_ENVIRONMENT, data_paths, defaults_vs_off, gpu
    global markdown, model_throughput, packing, peaks, speedrun, three_paths, check_precision, default_threads
    import lightning as L
    import torch

    from datamodules import RandomImagesDataModule
    from models import list_models
    from reporting.benchmarking import (
        ALLOCATOR_ENVIRONMENT,
        data_paths,
        defaults_vs_off,
        gpu,
        markdown,
        model_throughput,
        packing,
        peaks,
        speedrun,
        three_paths,
    )
    from training.performance import check_precision, default_threads


CONFIG_DIR = Path(__file__).resolve().parent / "configs"
QUICK = dict(warmup=1, steps=3, repeats=2)


def train_config(*overrides: str) -> DictConfig:
    """train.py's config with ``overrides`` (inside @hydra.main, Hydra is set up on configs/ already)."""
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="train", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def zoo_model(name: str, stem: str) -> functools.partial:
    """A builder of the model exactly as ``train.py model=<name>`` builds it (paper defaults from configs/model/),
    as data (create_model and its options), so that spawned processes can build it too."""
    options = OmegaConf.to_container(train_config(f"model={name}", f"model.stem={stem}").model, resolve=True)
    return functools.partial(get_method(options.pop("_target_")), **options, num_classes=10, in_channels=3)


def command_line_keys(overrides: list[str]) -> set[str]:
    """The keys a list of Hydra overrides sets (``models=[a,b]``, ``+x=1``, ``~y``: models, x, y)."""
    return {override.split("=", 1)[0].lstrip("+~") for override in overrides}


@user_errors_as_lines
def settings(cfg: DictConfig, given: set[str] = frozenset()) -> SimpleNamespace:
    """The run's settings, checked, with quick mode and the per-device defaults filled in.
    ``given``: the keys the command line set, which quick mode leaves as they are."""
    s = OmegaConf.to_container(cfg, resolve=True)
    if s["quick"]:
        s.update({key: value for key, value in {**QUICK, "models": s["quick_models"]}.items() if key not in given})
    unknown = sorted(set(s["models"]) - set(list_models()))
    if unknown:
        raise UserError(f"models: {', '.join(unknown)}: unknown model; valid: {', '.join(list_models())}")
    device = torch.device(s["device"] if s["device"] != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={s['device']}: no CUDA device is visible here; valid: cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device={s['device']}: this machine has {torch.cuda.device_count()} CUDA devices (cuda:0 ...)")
    amx = device.type == "cpu" and cpu_has_amx_bf16()  # bf16 pays on the CPU only with AMX (README "Speed switches")
    s["variants"] = s["variants"] or s[f"{device.type}_variants"] + (s["cpu_amx_variants"] if amx else [])
    for variant in s["variants"]:
        check_precision(variant["precision"], device.type)
    s["batch_sizes"] = s["batch_sizes"] or ([256, 512] if device.type == "cuda" else [128])
    s["threads"] = s["threads"] or default_threads()
    s["workers"] = min(s["workers"], os.cpu_count() or 1)
    s["defaults_check"]["enabled"] = ((not s["quick"]) if s["defaults_check"]["enabled"] is None
                                      else s["defaults_check"]["enabled"])
    s["speedrun"]["enabled"] = ((device.type == "cuda" and not s["quick"]) if s["speedrun"]["enabled"] is None
                                else s["speedrun"]["enabled"])
    s["packing"]["precision"] = s["packing"]["precision"] or ("bf16-mixed" if device.type == "cuda" else "32-true")
    check_precision(s["packing"]["precision"], device.type)
    largest = max(s["batch_sizes"] + [s["defaults_check"]["batch_size"]])
    # the Lightning steps stay in one epoch
    s["data_size"] = max(s["data_size"], 2 * (s["warmup"] + s["steps"] + 2) * largest)
    return SimpleNamespace(**s, device_=device, torch_default_threads=torch.get_num_threads())


def measure(args: SimpleNamespace, variant: dict, batch_size: int) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(args), **variant, "batch_size": batch_size})


def run(args: SimpleNamespace, out: Path) -> dict:
    device = args.device_
    torch.set_num_threads(args.threads)
    machine = {"cpu": cpu(), "torch_threads": torch.get_num_threads(),
               "gpu": gpu(device) if device.type == "cuda" else None,
               "allocator": {key: os.environ[key] for key in ALLOCATOR_ENVIRONMENT if os.environ.get(key)},
               "device_type": device.type, "torch": torch.__version__, "lightning": L.__version__,
               "python": platform.python_version(), "load_average_at_start": os.getloadavg()[0]}
    peak = peaks(device, {v["precision"] for v in args.variants}, machine["cpu"], args.threads)
    report = {"machine": machine, "peak": peak,
              "settings": {k: v for k, v in vars(args).items() if not k.endswith("_")}}
    build = lambda name: zoo_model(name, args.stem)  # noqa: E731
    report["models"] = [{"variant": v["name"], "batch_size": b,
                         **model_throughput(m, build(m), measure(args, v, b), device)}
                        for v in args.variants for b in args.batch_sizes for m in args.models]
    paths_args = measure(args, args.variants[args.paths_variant], args.batch_sizes[0])
    datamodule = RandomImagesDataModule(args.data_size, batch_size=paths_args.batch_size, num_workers=args.workers)
    datamodule.device = device
    datamodule.setup()
    if args.paths_check:
        report["data_paths"] = data_paths(datamodule, paths_args, device)
        report["paths"] = {"variant": paths_args.name, "batch_size": paths_args.batch_size,
                           "rows": [three_paths(m, build(m), paths_args, device, datamodule) for m in args.models]}
    check = args.defaults_check
    if check["enabled"]:
        check_args = measure(args, args.variants[0], check["batch_size"])
        datamodule.batch_size = check["batch_size"]
        runs = {name: functools.partial(instantiate, train_config(*overrides).performance)
                for name, overrides in check["runs"].items()}
        report["defaults"] = {"model": check["model"], "batch_size": check["batch_size"],
                              **defaults_vs_off(build(check["model"]), check_args, device, datamodule, runs)}
    if args.packing["enabled"]:
        report["packing"] = packing(build(args.packing["model"]), SimpleNamespace(**args.packing), device,
                                    args.packing["k"])
    if args.speedrun["enabled"]:
        report["speedrun"] = speedrun(CONFIG_DIR.parent / "train.py", args.speedrun["overrides"], out)
    machine["load_average_at_end"] = os.getloadavg()[0]  # other processes on the machine skew timings
    return report


@hydra.main(version_base="1.3", config_path="configs", config_name="benchmark")
@user_errors_as_lines  # bad input anywhere in the task: one line, exit 2 (Hydra would add a line of its own)
def main(cfg: DictConfig) -> dict:
    check_run(cfg, check=check_benchmark)
    import_heavy()
    hydra_config = HydraConfig.get()
    args = settings(cfg, command_line_keys(list(hydra_config.overrides.task)))
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no "GPU available" banners per repeat
    out = Path(hydra_config.runtime.output_dir)  # created by Hydra
    report = run(args, out)
    path = Path(args.report) if args.report else out / "benchmark.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, markdown(report))  # atomic, never through a link
    write_text(path.with_suffix(".json"), json.dumps(report, indent=2, default=str))
    print(markdown(report) + f"\nwritten: {path}, {path.with_suffix('.json')}")
    return report


if __name__ == "__main__":
    entry_point(CONFIG_DIR, main, config_name="benchmark")()
