"""Speed switches that are not ``lightning.Trainer`` arguments, as one callback,
(what ``benchmark.py`` measures with is in ``benchmarking.py``).

``PerformanceSwitches`` (configured by ``configs/performance/``):

- ``threads``: ``torch.set_num_threads`` while the trainer runs. ``null``:
  ``OMP_NUM_THREADS`` when it is set, else the cores this process may use
  (``os.sched_getaffinity``, as ``taskset`` or a scheduler set it) shared out
  among the trainer's local processes (CPU DDP); ``0``: torch's own count
  left alone (it counts physical cores, not the affinity mask).
- ``channels_last``: the network's 4-D weights and every input batch in
  NHWC memory order, which cuDNN's tensor-core convolutions and oneDNN's
  CPU convolutions prefer (PyTorch's "Channels Last Memory Format"
  tutorial). The weights are converted in ``setup``; the inputs by a
  forward pre-hook on ``net``, so every batch of fit, validate, test and
  predict is converted whatever loader made it (a callback cannot replace
  the batch in ``on_train_batch_start``; the hook changes no parameter
  names, so checkpoints are unaffected). ``auto``: on when the network has
  a 2-D convolution, unless the optimizer is LBFGS (it flattens gradients
  with ``view``, which NHWC gradients refuse).
- ``compile``: ``net.compile()`` (``torch.compile`` in place: the module
  keeps its parameter names, so its checkpoints still load into an
  uncompiled model); ``compile_mode`` and ``compile_backend`` are passed on.
  ``auto``: on when the fit plans at least ``compile_min_steps`` optimizer
  steps (compiling costs about a minute on a CPU, then each step is faster:
  it pays from a few hundred steps on) and, on the CPU, a C++ compiler is
  found (inductor needs one). ``compile_mode="reduce-overhead"`` (or
  ``max-autotune``) records the compiled network's kernels as CUDA graphs
  and replays them, one launch per graph instead of one per kernel: for
  small models whose GPU step is shorter than the host's launching of it
  (issue 21); each batch is marked a new iteration for them.
- ``cudnn_benchmark``: ``torch.backends.cudnn.benchmark``: cuDNN times its
  convolution algorithms for each new input shape and keeps the fastest.
  Ignored under ``Trainer(deterministic=True)``, with a warning on a GPU.
- ``matmul_precision``: ``torch.set_float32_matmul_precision``: "highest"
  (true fp32), "high" (TF32 on Ampere and later), "medium" (bf16).
- ``cpu_conv_precision``: ``torch.backends.mkldnn.conv.fp32_precision``, how
  oneDNN computes the CPU's convolutions of float32 tensors: null (torch's
  own, true fp32), "ieee" (true fp32), "bf16" (bf16 arithmetic inside the
  convolution, float32 tensors and weights outside it; pays on a CPU with
  AMX, see the README).

The global settings are restored in ``teardown``. Mixed precision is a
Trainer argument (``trainer.precision``), not a switch here: ``auto``
resolves per device (``auto_precision``: bf16 autocast on a CPU with AMX and
an Ampere or later GPU, float32 elsewhere), and ``check_precision`` refuses
bf16 on a CPU without bf16 instructions.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable

import lightning as L
import torch
from torch import nn

from core import hardware
from core.errors import UserError
from core.hardware import AMX_BF16, BF16_CPU_FLAGS, cpu_has_bf16, usable_cores

from .callbacks import steps_planned

MATMUL_PRECISIONS = ("highest", "high", "medium")
CPU_CONV_PRECISIONS = (None, "ieee", "bf16")
AUTO = "auto"
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile's modes that replay CUDA graphs on a GPU


def _on_cpu(accelerator: str) -> bool:
    return accelerator == "cpu" or (accelerator == AUTO and not torch.cuda.is_available())


def check_precision(precision: str, accelerator: str, flags: set[str] | None = None) -> None:
    """Refuse bf16 autocast on a CPU that emulates bf16 (measured 15x slower than fp32 on a Zen 3 EPYC)."""
    if str(precision).startswith("bf16") and _on_cpu(accelerator) and not cpu_has_bf16(flags):
        raise UserError(
            f"trainer.precision={precision}: this CPU has no bf16 instructions ({' or '.join(BF16_CPU_FLAGS)} in "
            "/proc/cpuinfo), so bf16 autocast is emulated and runs many times slower than fp32; use "
            "trainer.precision=32-true")


def auto_precision(accelerator: str, flags: set[str] | None = None) -> tuple[str, str]:
    """What ``trainer.precision=auto`` runs in on this machine, and why (for the run's first lines).

    A CPU: bf16 autocast exactly where it has AMX-BF16 (``amx_bf16``; README "Speed switches": ResNet-20
    through train.py 1.9x float32 there); float32 where it has only ``avx512_bf16`` (oneDNN without AMX:
    bf16 measured 0.82x float32) or no bf16 instructions (emulated: about 15x slower). A CUDA GPU: bf16 on Ampere and
    later (bf16 tensor cores), float32 before (fp16 needs loss scaling: choose ``16-mixed`` yourself).
    Anything else (mps, tpu): float32."""
    if _on_cpu(accelerator):
        flags = hardware.cpu_flags() if flags is None else flags  # read through the module: tests fake it there
        if AMX_BF16 in flags:
            return "bf16-mixed", f"this CPU has AMX-BF16 ({AMX_BF16} in /proc/cpuinfo)"
        if cpu_has_bf16(flags):
            return "32-true", (f"this CPU has {' and '.join(sorted(set(BF16_CPU_FLAGS) & flags))} but no AMX, "
                               "where bf16 measured slower than float32")
        return "32-true", "this CPU has no bf16 instructions"
    if accelerator in (AUTO, "gpu", "cuda") and torch.cuda.is_available():
        name, capability = torch.cuda.get_device_name(), torch.cuda.get_device_capability()
        if capability >= (8, 0):
            return "bf16-mixed", f"{name} has bf16 tensor cores"
        return "32-true", f"{name} has no bf16 tensor cores (compute capability {capability[0]}.{capability[1]} < 8.0)"
    return "32-true", f"trainer.accelerator={accelerator}"


def usable_precision(precision: str, accelerator: str, flags: set[str] | None = None) -> str:
    """``precision`` as this machine can run it: ``auto`` resolved (``auto_precision``), bf16 refused on a
    CPU that emulates it (``check_precision``), ``bf16-mixed`` -> ``16-mixed`` on a pre-Ampere GPU."""
    if precision == AUTO:
        return auto_precision(accelerator, flags)[0]
    check_precision(precision, accelerator, flags)
    if precision == "bf16-mixed" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return "16-mixed"
    return precision


def precision_line(precision: str, accelerator: str, flags: set[str] | None = None) -> str | None:
    """The line a run prints first where ``trainer.precision=auto`` chose for it; None for an explicit choice."""
    if precision != AUTO:
        return None
    chosen, why = auto_precision(accelerator, flags)
    return f"precision {chosen} (trainer.precision=auto: {why})"


def default_threads(processes: int = 1) -> int:
    """``OMP_NUM_THREADS`` when set, else this process's share of the usable cores."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return max(1, usable_cores() // max(1, processes))


def has_conv2d(net: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in net.modules())


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    x, *rest = args
    if isinstance(x, torch.Tensor) and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return (x, *rest)


def _switch(name: str, value) -> bool | str:
    if value not in (True, False, AUTO):
        raise UserError(f"performance.{name}={value!r} is not valid; valid: true, false, auto")
    return value


COMPILE_BACKENDS = ("inductor", "eager", "aot_eager", "cudagraphs")  # the usual ones; torch._dynamo lists the rest


def check_compile_backend(backend: str | Callable) -> None:
    """A backend name torch.compile knows (or a callable backend); the full list only for a name
    outside the usual ones."""
    if callable(backend) or backend in COMPILE_BACKENDS:
        return
    import torch._dynamo

    valid = torch._dynamo.list_backends(exclude_tags=())
    if not isinstance(backend, str) or backend not in valid:
        raise UserError(f"performance.compile_backend={backend!r} is not valid: it must be a torch.compile backend "
                        f"({', '.join(valid)})")


class PerformanceSwitches(L.Callback):
    def __init__(
        self,
        channels_last: bool | str = False,
        compile: bool | str = False,
        cudnn_benchmark: bool = False,
        matmul_precision: str = "highest",
        compile_mode: str | None = None,
        compile_backend: str | Callable = "inductor",
        threads: int | None = None,
        compile_min_steps: int = 1000,
        cpu_conv_precision: str | None = None,
    ) -> None:
        if cpu_conv_precision not in CPU_CONV_PRECISIONS:
            raise UserError(f"performance.cpu_conv_precision={cpu_conv_precision!r} is not valid; valid: "
                            "null, ieee, bf16")
        if matmul_precision not in MATMUL_PRECISIONS:
            raise UserError(f"performance.matmul_precision={matmul_precision!r} is not valid; valid: "
                            f"{', '.join(MATMUL_PRECISIONS)}")
        if threads is not None and not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 0):
            raise UserError(f"performance.threads={threads!r} is not valid: it must be null (the usable cores), "
                             "0 (torch's own count) or an integer >= 1")
        if compile_mode not in COMPILE_MODES:
            raise UserError(f"performance.compile_mode={compile_mode!r} is not valid; valid: null, "
                            f"{', '.join(m for m in COMPILE_MODES if m)}")
        if not (isinstance(compile_min_steps, int) and not isinstance(compile_min_steps, bool)
                and compile_min_steps >= 0):
            raise UserError(f"performance.compile_min_steps={compile_min_steps!r} is not valid: "
                            "it must be an integer >= 0")
        check_compile_backend(compile_backend)
        self.channels_last, self.compile = _switch("channels_last", channels_last), _switch("compile", compile)
        self.cudnn_benchmark, self.threads, self.compile_min_steps = cudnn_benchmark, threads, compile_min_steps
        self.matmul_precision, self.compile_mode, self.compile_backend = matmul_precision, compile_mode, compile_backend
        self.cpu_conv_precision = cpu_conv_precision
        self._saved: tuple | None = None
        self._prepared: set[int] = set()  # nets already converted (setup runs once per stage)
        self.applied: dict = {}  # what was decided, for the run's log and the tests

    def decide(self, net: nn.Module, device: torch.device, planned_steps: float | None = None,
               optimizer: Callable | None = None) -> dict:
        """The switches ``auto`` resolves to for ``net`` on ``device`` over a fit of ``planned_steps``
        with ``optimizer`` (a factory: LBFGS flattens gradients with ``view``, which NHWC ones refuse)."""
        lbfgs = getattr(optimizer, "func", optimizer) is torch.optim.LBFGS
        channels_last = (has_conv2d(net) and not lbfgs) if self.channels_last == AUTO else self.channels_last
        compile_ = self.compile
        if compile_ == AUTO:
            long_enough = planned_steps is not None and planned_steps >= self.compile_min_steps
            compiler = device.type != "cpu" or shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
            compile_ = bool(long_enough and compiler)
        return {"channels_last": bool(channels_last), "compile": bool(compile_)}

    def apply(self, net: nn.Module, deterministic: bool = False, threads: int | None = None,
              planned_steps: float | None = None, device: torch.device | None = None,
              optimizer: Callable | None = None) -> nn.Module:
        """Apply every switch to ``net`` and the process (also usable without a Trainer)."""
        if self._saved is None:
            self._saved = (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision(),
                           torch.get_num_threads(), torch.backends.mkldnn.conv.fp32_precision)
        # in setup, still on the CPU: say where it goes
        device = device or next(net.parameters(), torch.empty(0)).device
        if self.cudnn_benchmark and deterministic:
            # on a CPU there is no cuDNN to speak of (the default preset sets it on everywhere)
            if device.type == "cuda":
                warnings.warn("performance.cudnn_benchmark=true is ignored: trainer.deterministic=true needs "
                              "fixed algorithms")
        elif self.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision(self.matmul_precision)
        if self.cpu_conv_precision:
            torch.backends.mkldnn.conv.fp32_precision = self.cpu_conv_precision
        if self.threads != 0:  # 0: torch's own count
            torch.set_num_threads(self.threads or threads or default_threads())
        if id(net) in self._prepared:
            return net
        self.applied = {**self.decide(net, device, planned_steps, optimizer), "threads": torch.get_num_threads()}
        if self.applied["channels_last"]:
            net.to(memory_format=torch.channels_last)
            net.register_forward_pre_hook(_to_channels_last)
        if self.applied["compile"]:
            net.compile(mode=self.compile_mode, backend=self.compile_backend)
        self._prepared.add(id(net))
        return net

    def restore(self) -> None:
        """Put the process-wide settings back as they were before ``apply``."""
        if self._saved is not None:
            torch.backends.cudnn.benchmark, precision, threads, conv_precision = self._saved
            torch.set_float32_matmul_precision(precision)
            torch.set_num_threads(threads)
            torch.backends.mkldnn.conv.fp32_precision = conv_precision
            self._saved = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        planned = None
        if stage == "fit" and self.compile == AUTO:
            try:  # the data module is set up by now; max_epochs, max_steps and limit_train_batches are counted in
                planned = steps_planned(trainer)
            except Exception:  # a loader without a length: no estimate, no compile
                planned = None
        processes = trainer.num_devices if trainer.strategy.root_device.type == "cpu" else 1
        # Trainer(deterministic=True) has switched torch's deterministic algorithms on by now
        self.apply(pl_module.net, deterministic=torch.are_deterministic_algorithms_enabled(),
                   threads=default_threads(processes), planned_steps=planned, device=trainer.strategy.root_device,
                   optimizer=getattr(pl_module, "optimizer_factory", None))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.restore()

    def _mark_step(self, *args) -> None:
        """Each batch is a new iteration for torch.compile's CUDA graphs: tensors a replay wrote in an
        earlier batch may be overwritten from now on (outputs read later must be copied first)."""
        if self.applied.get("compile") and self.compile_mode in CUDA_GRAPH_MODES:
            torch.compiler.cudagraph_mark_step_begin()

    on_train_batch_start = on_validation_batch_start = on_test_batch_start = on_predict_batch_start = _mark_step
