"""Speed switches that are not ``lightning.Trainer`` arguments, as one callback,
(what ``benchmark.py`` measures with is in ``benchmarking.py``).

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
