"""How ``benchmark.py`` measures speed: clocks synchronized with the device,
peak memory, a plain PyTorch training loop as the reference, and the three
measurements it reports (model throughput, Lightning's overhead, the data
paths), each timed after a warm-up, over several repeats, as medians.

``args`` is benchmark.py's parsed command line (batch_size, image_size,
precision, channels_last, compile, warmup, steps, repeats, workers).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import io
import os
import resource
import statistics
import tempfile
import time
from typing import Callable

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from .module import ImageClassifier
from .performance import PerformanceSwitches

MEMORY = ("training: peak RSS growth (MiB)", "training: peak allocated (MiB)")  # CPU, CUDA


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that a clock reading means something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str):
    """The autocast context a Trainer with ``precision`` runs its steps in."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def plain_training_steps(net: nn.Module, batches, optimizer: torch.optim.Optimizer, precision: str = "32-true") -> list[float]:
    """The reference: a plain PyTorch training loop (forward, cross-entropy,
    backward, step) over ``batches``; returns the wall time at the end of
    each step, synchronized with the device."""
    device = next(net.parameters()).device
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    net.train()
    times = []
    for x, y in batches:
        with autocast(device, precision):
            out = net(x)
            loss = nn.functional.cross_entropy(out[0] if isinstance(out, tuple) else out, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        synchronize(device)
        times.append(time.perf_counter())
    return times


def step_durations(times: list[float], warmup: int) -> list[float]:
    """Durations between consecutive time stamps, the first ``warmup`` left out."""
    return [b - a for a, b in zip(times, times[1:])][warmup:]


class MemoryPeak:
    """Peak memory of a block of code, in bytes.

    CUDA: ``torch.cuda.max_memory_allocated`` after a reset (tensors only,
    the allocator's cache excluded). CPU: the growth of the process's peak
    resident set size over the block. On Linux, memory that glibc keeps after
    earlier blocks is handed back first (``malloc_trim``) and the peak is
    reset (``/proc/self/clear_refs``); elsewhere ``getrusage``'s lifetime
    peak is used and a block that stays under an earlier peak reads 0.
    tracemalloc would not see torch's allocations.
    """

    def __init__(self, device: torch.device) -> None:
        self.device, self.bytes = device, 0

    @staticmethod
    def _rss_kib(field: str) -> int | None:
        try:
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith(field))
        except (OSError, StopIteration):
            return None

    def __enter__(self) -> "MemoryPeak":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the OS, or it hides new growth
            with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
            self._start = self._rss_kib("VmRSS:") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = self._rss_kib("VmHWM:") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.bytes = max(0, peak - self._start) * 1024


class StepClock(L.Callback):
    """Records the wall time at the end of every training batch (after the
    optimizer step), synchronized with the device: consecutive differences
    are whole steps, loading and Lightning's hooks included."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(pl_module.device)
        self.times.append(time.perf_counter())


def cpu_description() -> str:
    """The CPU's model name and its cores, e.g. for a benchmark's header."""
    name = "CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), name)
    return f"{name}, {os.cpu_count()} cores"


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)


def switched(net: nn.Module, args) -> nn.Module:
    return PerformanceSwitches(args.channels_last, args.compile).apply(net)


def model_throughput(name: str, build: Callable[[], nn.Module], args, device) -> dict:
    """(a) images/s training and inferring on one batch held on the device; peak memory of training."""
    torch.manual_seed(0)
    net, n = switched(build().to(device), args), args.warmup + args.steps
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


def lightning_vs_plain(name: str, build: Callable[[], nn.Module], args, device, datamodule) -> dict:
    """(b) median step time through ImageClassifier + Trainer and through a plain loop, interleaved."""
    torch.manual_seed(0)
    initial, loader, n = build(), datamodule.train_dataloader(), args.warmup + args.steps
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


def data_paths(datamodule: L.LightningDataModule, args, device) -> dict:
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
