"""Speed switches that are not ``lightning.Trainer`` arguments, as one callback,
and the few tools ``benchmark.py`` measures speed with.

``PerformanceSwitches`` (configured by ``configs/performance/``):

- ``channels_last``: the network's 4-D weights and every input batch in
  NHWC memory order, which cuDNN's tensor-core convolutions prefer
  (PyTorch's "Channels Last Memory Format" tutorial). The weights are
  converted in ``setup``; the inputs by a forward pre-hook on ``net``, so
  every batch of fit, validate, test and predict is converted whatever
  loader made it (a callback cannot replace the batch in
  ``on_train_batch_start``; the hook changes no parameter names, so
  checkpoints are unaffected).
- ``compile``: ``net.compile()`` (``torch.compile`` in place: the module
  keeps its parameter names, so its checkpoints still load into an
  uncompiled model); ``compile_mode`` and ``compile_backend`` are passed on.
- ``cudnn_benchmark``: ``torch.backends.cudnn.benchmark``: cuDNN times its
  convolution algorithms for each new input shape and keeps the fastest.
  Ignored with a warning under ``Trainer(deterministic=True)``.
- ``matmul_precision``: ``torch.set_float32_matmul_precision``: "highest"
  (true fp32), "high" (TF32 on Ampere and later), "medium" (bf16).

The global settings are restored in ``teardown``. Mixed precision is a
Trainer argument (``trainer.precision``), not a switch here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import time
import warnings
from typing import Callable

import lightning as L
import torch
from torch import nn

MATMUL_PRECISIONS = ("highest", "high", "medium")


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    x, *rest = args
    if isinstance(x, torch.Tensor) and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return (x, *rest)


class PerformanceSwitches(L.Callback):
    def __init__(
        self,
        channels_last: bool = False,
        compile: bool = False,
        cudnn_benchmark: bool = False,
        matmul_precision: str = "highest",
        compile_mode: str | None = None,
        compile_backend: str | Callable = "inductor",
    ) -> None:
        if matmul_precision not in MATMUL_PRECISIONS:
            raise ValueError(f"performance.matmul_precision={matmul_precision!r} is not valid; valid: {', '.join(MATMUL_PRECISIONS)}")
        self.channels_last, self.compile, self.cudnn_benchmark = channels_last, compile, cudnn_benchmark
        self.matmul_precision, self.compile_mode, self.compile_backend = matmul_precision, compile_mode, compile_backend
        self._saved: tuple | None = None
        self._prepared: set[int] = set()  # nets already converted (setup runs once per stage)

    def apply(self, net: nn.Module, deterministic: bool = False) -> nn.Module:
        """Apply every switch to ``net`` and the process (also usable without a Trainer)."""
        if self._saved is None:
            self._saved = (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision())
        if self.cudnn_benchmark and deterministic:
            warnings.warn("performance.cudnn_benchmark=true is ignored: trainer.deterministic=true needs fixed algorithms")
        elif self.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision(self.matmul_precision)
        if id(net) in self._prepared:
            return net
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
            net.register_forward_pre_hook(_to_channels_last)
        if self.compile:
            net.compile(mode=self.compile_mode, backend=self.compile_backend)
        self._prepared.add(id(net))
        return net

    def restore(self) -> None:
        """Put the process-wide settings back as they were before ``apply``."""
        if self._saved is not None:
            torch.backends.cudnn.benchmark, precision = self._saved
            torch.set_float32_matmul_precision(precision)
            self._saved = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Trainer(deterministic=True) has switched torch's deterministic algorithms on by now
        self.apply(pl_module.net, deterministic=torch.are_deterministic_algorithms_enabled())

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.restore()


# measuring -------------------------------------------------------------------
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
