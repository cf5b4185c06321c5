"""How ``benchmark.py`` measures speed: clocks synchronized with the device
at the start and the end of the timed steps (never between them: a wait per
step would keep the host from queueing the next step while the device runs
this one, and add every step's host overhead to its time), peak memory, the machine's measured peak (sgemm), a bare
training step as the reference, and the measurements it reports (the bare step per model, the
same step through our Lightning module and through a plain torchvision
loop, the data paths, the defaults against ``performance=off``), each timed
after a warm-up, over several repeats, as medians.

``args`` is an object with benchmark.py's settings as attributes
(batch_size, image_size, precision, channels_last, compile, warmup, steps,
repeats, workers).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import io
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from core.formatting import markdown_table
from training.module import ImageClassifier
from training.performance import PerformanceSwitches

MEMORY = ("training: peak RSS growth (MiB)", "training: peak allocated (MiB)")  # CPU, CUDA
# how this process allocates memory: a report names it
ALLOCATOR_ENVIRONMENT = ("LD_PRELOAD", "MALLOC_CONF", "GLIBC_TUNABLES")


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that a clock reading means something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str):
    """The autocast context a Trainer with ``precision`` runs its steps in."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def plain_training_steps(net: nn.Module, batches, optimizer: torch.optim.Optimizer, precision: str = "32-true",
                         warmup: int = 0) -> list[float]:
    """The reference: a plain PyTorch training loop (forward, cross-entropy,
    backward, step) over ``batches``; returns the wall time at the end of
    each step. The device is waited for only after step ``warmup`` and after
    the last step, so those two stamps bound the timed steps (``step_time``)."""
    device = next(net.parameters()).device
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    net.train()
    times = []
    for i, (x, y) in enumerate(batches):
        torch.compiler.cudagraph_mark_step_begin()  # a new iteration for CUDA graphs (compile_mode=reduce-overhead)
        with autocast(device, precision):
            out = net(x)
            loss = nn.functional.cross_entropy(out[0] if isinstance(out, tuple) else out, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if i == warmup:
            synchronize(device)
        times.append(time.perf_counter())
    synchronize(device)
    times[-1] = time.perf_counter()
    return times


def step_time(times: list[float], warmup: int) -> float:
    """Seconds per step over the timed steps: from the stamp after step ``warmup`` to the last one."""
    return (times[-1] - times[warmup]) / (len(times) - 1 - warmup)


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

    def __enter__(self) -> MemoryPeak:
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
    optimizer step), loading and Lightning's hooks included; the device is
    waited for only after step ``warmup`` and after step ``last``, which bound
    the timed steps. On CUDA it also counts the host synchronizations between
    them (``torch.cuda.set_sync_debug_mode``): a training step should have none."""

    def __init__(self, warmup: int, last: int) -> None:
        self.warmup, self.last = warmup, last
        self.times: list[float] = []
        self.syncs: int | None = None
        self._caught = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        i, cuda = len(self.times), pl_module.device.type == "cuda"
        if i == self.last and self._caught is not None:
            torch.cuda.set_sync_debug_mode(0)
            self.syncs = sum("synchroniz" in str(w.message) for w in self._records)
            self._caught.__exit__(None, None, None)
            self._caught = None
        if i in (self.warmup, self.last):
            synchronize(pl_module.device)
        self.times.append(time.perf_counter())
        if i == self.warmup and cuda:
            self._caught = warnings.catch_warnings(record=True)
            self._records = self._caught.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        torch.compiler.cudagraph_mark_step_begin()


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)


def switched(net: nn.Module, args) -> nn.Module:
    """The benchmark's switches applied to ``net``; torch.compile's caches emptied first (every
    compiled module shares ``Module._call_impl``'s code object, and its recompile limit). oneDNN's
    convolutions compute in true fp32 unless the variant names another ``cpu_conv_precision``."""
    if args.compile:
        torch._dynamo.reset()
    return PerformanceSwitches(args.channels_last, args.compile, threads=torch.get_num_threads(),
                               cpu_conv_precision=getattr(args, "cpu_conv_precision", None) or "ieee").apply(net)


def gpu(device: torch.device) -> dict:
    """Name, compute capability, memory, driver and CUDA version of a CUDA device."""
    props = torch.cuda.get_device_properties(device)
    driver = None
    if shutil.which("nvidia-smi"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=20)
            driver = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None
    return {"name": props.name, "capability": f"{props.major}.{props.minor}", "memory_gib": props.total_memory / 2**30,
            "multiprocessors": props.multi_processor_count, "driver": driver, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}


# Dense (no sparsity) peaks from NVIDIA's data sheets, TFLOP/s: fp32 (no tensor cores), bf16 tensor cores.
GPU_PEAKS = (("H100 PCIe", 51.2, 756.0), ("H100", 66.9, 989.4), ("H200", 66.9, 989.4), ("A100", 19.5, 312.0))


def theoretical_peak(device: torch.device, cpu: dict, threads: int) -> dict:
    """The peak in GFLOP/s where known: a GPU's data sheet (fp32, bf16); a CPU's at its nominal clock
    (fp32 of the FMA units, bf16 of AMX), which its cores may exceed under load (``hardware.cpu``)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        fp32, bf16 = next(((f, b) for key, f, b in GPU_PEAKS if key in name), (None, None))
        return {"fp32": fp32 and fp32 * 1e3, "bf16": bf16 and bf16 * 1e3, "source": "data sheet"}
    per_core = {dtype: cpu.get(f"nominal_{dtype}_gflops_per_core") for dtype in ("fp32", "bf16")}
    return {**{dtype: value and value * threads for dtype, value in per_core.items()}, "source": "nominal clock"}


def matmul_size(device: torch.device, dtype: torch.dtype = torch.float32) -> int:
    """n of the n x n product that measures the peak: 8192 on a GPU; on a CPU 1024 for fp32 and 2048 for
    bf16 (AMX reached 1.46 TFLOP/s at 1024, 2.6-2.8 at 2048 and no more at 4096: a small product
    spends its time outside the tiles)."""
    return 8192 if device.type == "cuda" else 2048 if dtype == torch.bfloat16 else 1024


def sgemm(device: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None, repeats: int = 5) -> float:
    """The measured peak: GFLOP/s of the best of ``repeats`` n x n matrix products (2 n^3 FLOPs each)."""
    n = n or matmul_size(device, dtype)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # true fp32, no TF32
    try:
        torch.mm(a, b)  # warm-up: library start-up, kernel selection
        best = float("inf")
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            torch.mm(a, b)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_float32_matmul_precision(precision)
    return 2 * n**3 / best / 1e9


def peaks(device: torch.device, precisions: set[str], cpu: dict, threads: int) -> dict:
    """The measured matrix-product peak of fp32 (and of bf16 where a variant runs in it), with the size
    each was measured at, and the theoretical one (``theoretical_peak``)."""
    dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if "bf16-mixed" in precisions else {})}
    return {"measured": {name: sgemm(device, dtype) for name, dtype in dtypes.items()},
            "measured_size": {name: matmul_size(device, dtype) for name, dtype in dtypes.items()},
            "theoretical": theoretical_peak(device, cpu, threads)}


def training_flops(net: nn.Module, image_size: int) -> float:
    """FLOPs of one training image: 2 per multiply-accumulate, forward once and backward twice over."""
    from analysis.introspection import count_parameters_and_macs

    return 6.0 * count_parameters_and_macs(net, (3, image_size, image_size))[1]


def model_throughput(name: str, build: Callable[[], nn.Module], args, device) -> dict:
    """(a) images/s training (the bare step) and inferring on one batch held on the device;
    peak memory of training; training FLOPs per image, for the fraction of the peak."""
    torch.manual_seed(0)
    net = build()
    flops = training_flops(net, args.image_size)
    net, n = switched(net.to(device), args), args.warmup + args.steps
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    with MemoryPeak(device) as memory:
        train = plain_training_steps(net, [(x, y)] * (n + 1), sgd(net.parameters()), args.precision, args.warmup)
    net.eval()
    infer = []
    with torch.inference_mode(), autocast(device, args.precision):
        for i in range(n + 1):
            net(x)
            if i in (args.warmup, n):
                synchronize(device)
            infer.append(time.perf_counter())
    rate = lambda times: args.batch_size / step_time(times, args.warmup)  # noqa: E731
    return {"model": name, "params": sum(p.numel() for p in net.parameters()), "train_img_s": rate(train),
            "infer_img_s": rate(infer), "train_peak_mem_mib": memory.bytes / 2**20, "train_flops_per_image": flops}


def train_callbacks() -> list[L.Callback]:
    """The callbacks of configs/callbacks/default.yaml that act during a training step, as train.py builds them
    (the checkpoints, written per epoch, left out), with the progress bar as in a terminal."""
    from training.callbacks import DivergenceGuard, LearningRate, RNGStates
    from training.progress import EpochLog

    epoch_log = EpochLog()
    epoch_log.terminal = True  # the bar stays, as in a terminal
    return [LearningRate(), RNGStates(), DivergenceGuard(), epoch_log]


def lightning_steps(net: nn.Module, args, device, loader, callbacks: list) -> StepClock:
    """The clock (end times of the steps, host synchronizations) of the training steps of ImageClassifier +
    lightning.Trainer, set up as train.py sets it up (TensorBoard logger, progress bar, ``train_callbacks``)."""
    clock = StepClock(args.warmup, args.warmup + args.steps)
    quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    with tempfile.TemporaryDirectory() as log_dir, quiet[0], quiet[1]:
        trainer = L.Trainer(
            accelerator=device.type, devices=[device.index or 0] if device.type == "cuda" else 1,
            precision=args.precision, max_steps=args.warmup + args.steps + 1,
            logger=TensorBoardLogger(log_dir, name="", version=""), callbacks=[*train_callbacks(), *callbacks, clock],
            enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=50,
        )
        module = ImageClassifier(net, optimizer=functools.partial(sgd), num_classes=10)
        trainer.fit(module, train_dataloaders=loader)
    return clock


PATHS = ("bare", "lightning", "torchvision")


def three_paths(name: str, build: Callable[[], nn.Module], args, device, datamodule) -> dict:
    """(b) the time of the same training step three ways, interleaved over the repeats (median of the repeats):
    ``bare``: forward, loss, backward, step on one batch held on the device (the compute alone);
    ``lightning``: ImageClassifier + Trainer over the tensor pipeline, as ``train.py`` runs it;
    ``torchvision``: a plain loop over a DataLoader with per-image transforms in ``args.workers``
    worker processes, each batch copied to the device (the usual PyTorch script)."""
    torch.manual_seed(0)
    initial, n = build(), args.warmup + args.steps
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    medians: dict[str, list[float]] = {path: [] for path in PATHS}
    syncs = []
    for repeat in range(args.repeats):
        for path in PATHS[repeat % 3:] + PATHS[:repeat % 3]:  # each path goes first in turn
            net = switched(copy.deepcopy(initial).to(device), args)  # the same weights every path, every repeat
            if path == "lightning":
                datamodule.pipeline = "tensor"
                clock = lightning_steps(net, args, device, datamodule.train_dataloader(), [])
                times = clock.times
                syncs.append(clock.syncs)
            else:
                if path == "bare":
                    batches = [(x, y)] * (n + 1)
                else:
                    datamodule.pipeline = "torchvision"
                    batches = ((a.to(device, non_blocking=True), b.to(device, non_blocking=True))
                               for _, (a, b) in zip(range(n + 1), datamodule.train_dataloader()))
                times = plain_training_steps(net, batches, sgd(net.parameters()), args.precision, args.warmup)
            medians[path].append(step_time(times, args.warmup))
    datamodule.pipeline = "tensor"
    ms = {path: 1e3 * statistics.median(values) for path, values in medians.items()}
    return {"model": name, **{f"{path}_ms": ms[path] for path in PATHS},
            **{f"{path}_img_s": 1e3 * args.batch_size / ms[path] for path in PATHS},
            **{f"{path}_repeats_ms": [1e3 * t for t in medians[path]] for path in PATHS},
            "lightning_syncs_per_step": None if None in syncs else max(syncs) / args.steps}


def defaults_vs_off(build: Callable[[], nn.Module], args, device, datamodule, runs: dict[str, Callable]) -> dict:
    """(d) the Lightning step (tensor pipeline, as train.py) with each named ``PerformanceSwitches``
    factory of ``runs`` as its callback, interleaved over the repeats; the first run is the reference.
    Before every run torch's thread count is put back to ``args.torch_default_threads``."""
    torch.manual_seed(0)
    initial, names = build(), list(runs)
    datamodule.pipeline = "tensor"
    medians: dict[str, list[float]] = {name: [] for name in names}
    applied: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            torch.set_num_threads(args.torch_default_threads)
            torch._dynamo.reset()
            switches = runs[name]()
            clock = lightning_steps(copy.deepcopy(initial).to(device), args, device,
                                    datamodule.train_dataloader(), [switches])
            medians[name].append(step_time(clock.times, args.warmup))
            applied[name] = switches.applied
    torch.set_num_threads(args.threads)
    ms = {name: 1e3 * statistics.median(values) for name, values in medians.items()}
    return {"runs": [{"name": name, "ms": ms[name], "img_s": 1e3 * args.batch_size / ms[name],
                      "speedup": ms[names[0]] / ms[name], "applied": applied[name],
                      "repeats_ms": [1e3 * t for t in medians[name]]} for name in names]}


class PackedWindow(L.Callback):
    """Times one of k runs training at once: after ``warmup`` steps it waits for the other runs
    (``barrier``), then counts its steps for ``seconds`` (the device waited for at both ends) and stops."""

    def __init__(self, barrier, warmup: int, seconds: float) -> None:
        self.barrier, self.warmup, self.seconds = barrier, warmup, seconds
        self.done, self.steps, self.start, self.elapsed = 0, 0, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        torch.compiler.cudagraph_mark_step_begin()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.done += 1
        if self.start is None:
            if self.done == self.warmup:
                synchronize(pl_module.device)
                self.barrier.wait(timeout=900)
                self.start = time.perf_counter()
            return
        self.steps += 1
        if time.perf_counter() - self.start >= self.seconds:
            synchronize(pl_module.device)
            self.elapsed = time.perf_counter() - self.start
            trainer.should_stop = True


def packed_run(build: Callable[[], nn.Module], settings, device: str, threads: int, barrier, results) -> None:
    """One of the k processes of ``packing``: train.py's Lightning step over the tensor pipeline on random
    CIFAR-shaped images, until its ``PackedWindow`` stops it; puts (steps, seconds) or the error in ``results``."""
    import logging

    from datamodules import RandomImagesDataModule

    try:
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        torch.set_num_threads(threads)
        device_ = torch.device(device)
        datamodule = RandomImagesDataModule(settings.data_size, batch_size=settings.batch_size, num_workers=0)
        datamodule.device = device_
        datamodule.setup()
        switches = PerformanceSwitches(settings.channels_last, False, cudnn_benchmark=True, matmul_precision="high",
                                       threads=threads)
        # as performance=default sets them, compile left out (as the zoo's runs)
        net = switches.apply(build().to(device_))
        window = PackedWindow(barrier, settings.warmup, settings.seconds)
        quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
        with tempfile.TemporaryDirectory() as log_dir, quiet[0], quiet[1]:
            trainer = L.Trainer(accelerator=device_.type, devices=[device_.index or 0] if device_.type == "cuda" else 1,
                                precision=settings.precision, max_epochs=10**6,
                                logger=TensorBoardLogger(log_dir, name="", version=""),
                                callbacks=[*train_callbacks(), window], enable_checkpointing=False,
                                enable_model_summary=False, enable_progress_bar=False, log_every_n_steps=50)
            trainer.fit(ImageClassifier(net, optimizer=functools.partial(sgd), num_classes=10),
                        train_dataloaders=datamodule.train_dataloader())
        results.put({"steps": window.steps, "seconds": window.elapsed})
    except BaseException as error:  # noqa: BLE001 -- reported by the parent, which must not wait for this run
        barrier.abort()
        results.put({"error": f"{type(error).__name__}: {error}"})


def packing(build: Callable[[], nn.Module], settings, device: torch.device, ks: list[int]) -> dict:
    """(f) aggregate training images/s of k runs at once on one device, for each k of ``ks``: k processes
    (spawned, each with its share of the CPU cores), each timed over the same ``settings.seconds``."""
    import multiprocessing
    import queue as queues

    from core.hardware import usable_cores

    context = multiprocessing.get_context("spawn")
    rows = []
    for k in ks:
        barrier, results = context.Barrier(k), context.Queue()
        threads = max(1, usable_cores() // k)
        runs = [context.Process(target=packed_run, args=(build, settings, str(device), threads, barrier, results),
                                daemon=True)
                for _ in range(k)]
        for run in runs:
            run.start()
        try:
            done = [results.get(timeout=900) for _ in runs]
        except queues.Empty:
            done = [{"error": "no result within 900 s"}]
        for run in runs:
            run.join(timeout=60)
            if run.is_alive():
                run.kill()
        errors = [d["error"] for d in done if "error" in d]
        rates = [] if errors else [d["steps"] * settings.batch_size / d["seconds"] for d in done]
        rows.append({"k": k, "threads_per_run": threads, "images_per_s": sum(rates) if rates else None,
                     "per_run_images_per_s": rates, "error": errors[0] if errors else ""})
    base = rows[0]["images_per_s"]
    for row in rows:
        row["speedup"] = row["images_per_s"] / base if base and row["images_per_s"] else None
    return {**{key: getattr(settings, key) for key in ("model", "batch_size", "precision", "channels_last", "seconds")},
            "rows": rows}


def best_k(packed: dict, within: float = 0.95) -> int | None:
    """The fewest runs per device whose aggregate images/s is within ``within`` of the best k's."""
    rows = [r for r in packed["rows"] if r["images_per_s"]]
    if not rows:
        return None
    best = max(r["images_per_s"] for r in rows)
    return min(r["k"] for r in rows if r["images_per_s"] >= within * best)


def data_paths(datamodule: L.LightningDataModule, args, device) -> dict:
    """(c) images/s of the training loader of each data path, on the same images."""
    rates = {}
    for pipeline in ("tensor", "torchvision"):
        datamodule.pipeline = pipeline
        loader, per_repeat = datamodule.train_dataloader(), []
        for _ in range(args.repeats):
            batches = iter(loader)
            for _, (_x, _) in zip(range(args.warmup), batches):  # worker start-up excluded
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
    return markdown_table(header, rows, right=range(1, len(header))) + [""]


def _g(value: float | None, unit: str = "") -> str:
    return "?" if value is None else f"{value:,.0f}{unit}"


def machine_lines(report: dict) -> list[str]:
    m, peak, s = report["machine"], report["peak"], report["settings"]
    c = m["cpu"]
    clock = f", {c['mhz'] / 1e3:.2f} GHz nominal" if c["mhz"] else ""
    lines = [f"Machine: CPU {c['model']} ({c['vendor']} family {c['family']}; {' '.join(c['flags'])}; "
             f"bf16 instructions: {'yes' if c['bf16'] else 'no'}), {c['cores_usable']} of {c['cores_total']} "
             f"cores usable{clock}; torch threads {m['torch_threads']}."]
    if m["gpu"]:
        g = m["gpu"]
        lines.append(f"GPU: {g['name']} (compute capability {g['capability']}, {g['memory_gib']:.0f} GiB, "
                     f"{g['multiprocessors']} SMs), driver {g['driver']}, CUDA {g['cuda']}, cuDNN {g['cudnn']}.")
    allocator = "; ".join(f"{k}={v}" for k, v in (m.get("allocator") or {}).items())
    lines.append(f"Memory allocator: {allocator or 'the C library malloc, default settings'}.")
    lines.append(f"Software: torch {m['torch']}, lightning {m['lightning']}, python {m['python']}. Load average "
                 f"{m['load_average_at_start']:.1f} at start, {m['load_average_at_end']:.1f} at end.")
    lines.append(peak_line(peak, c, m["torch_threads"], m["device_type"]))
    lines.append(f"Protocol: {s['warmup']} warm-up + {s['steps']} timed steps, median of {s['repeats']} repeats; "
                 f"{s['image_size']}x{s['image_size']}, stem {s['stem']}, random CIFAR-shaped images.")
    return lines + [""]


def peak_line(peak: dict, c: dict, threads: int, device_type: str) -> str:
    """The measured peak per precision (the matrix size named), then the data sheet's (GPU) or the
    nominal-clock figure (CPU), labelled as such: a CPU's cores may run faster than its nominal clock."""
    sizes = peak.get("measured_size", {})
    measured = ", ".join(f"{k} {_g(v)} GFLOP/s" + (f" ({sizes[k]}x{sizes[k]} matrix product)" if k in sizes else "")
                         for k, v in peak["measured"].items())
    theory = {k: v for k, v in peak["theoretical"].items() if k in ("fp32", "bf16") and v}
    if not theory:
        return f"Peak: measured {measured}."
    if device_type == "cuda":
        return (f"Peak: measured {measured}; data sheet "
                + ", ".join(f"{k} {_g(v)} GFLOP/s" for k, v in theory.items()) + ".")
    unit = {"fp32": f"{c.get('fp32_flops_per_cycle')} FLOP/cycle of FMA",
            "bf16": f"{c.get('bf16_flops_per_cycle'):,} FLOP/cycle of AMX"
            if c.get("bf16_flops_per_cycle") else ""}
    nominal = ", ".join(f"{k} {_g(v)} GFLOP/s ({unit[k]} x {threads} thread{'s' if threads != 1 else ''})"
                        for k, v in theory.items())
    return (f"Peak: measured {measured}; nominal (at the {c['mhz'] / 1e3:.2f} GHz /proc/cpuinfo reports, which "
            f"cores under load exceed, so a measurement can be higher): {nominal}.")


def paths_tables(report: dict) -> list[str]:
    """(b) the same step three ways and (c) the data paths alone."""
    paths, d, device_type = report["paths"], report["data_paths"], report["machine"]["device_type"]
    lines = [f"(b) The same step three ways, interleaved ({paths['variant']}, batch {paths['batch_size']}); data time: "
             "the tensor pipeline's time per batch as a fraction of the Lightning step:", ""]
    syncs = device_type == "cuda"  # counted on CUDA only (torch.cuda.set_sync_debug_mode)
    lines += table(["model", "bare img/s", "train.py's Lightning step img/s", "torchvision loop img/s",
                    "Lightning / bare", "torchvision / bare", "data time",
                    *(["host syncs per Lightning step"] if syncs else [])], [
        [r["model"], f"{r['bare_img_s']:,.0f}", f"{r['lightning_img_s']:,.0f}", f"{r['torchvision_img_s']:,.0f}",
         f"{r['lightning_img_s'] / r['bare_img_s']:.2f}", f"{r['torchvision_img_s'] / r['bare_img_s']:.2f}",
         f"{paths['batch_size'] / d['tensor_img_s'] / (r['lightning_ms'] / 1e3):.1%}",
         *([f"{r['lightning_syncs_per_step']:.2f}" if r.get("lightning_syncs_per_step") is not None else "?"]
           if syncs else [])]
        for r in paths["rows"]])
    return lines + table([f"(c) data path alone (training loader, augment={d['augment']}, "
                          f"{d['images']:,} images)", "images/s"], [
        [f"tensor (on {device_type})", f"{d['tensor_img_s']:,.0f}"],
        [f"torchvision ({d['workers']} workers)", f"{d['torchvision_img_s']:,.0f}"],
        ["speed-up", f"{d['speedup']:.1f}x"]])


def markdown(report: dict) -> str:
    m, peak = report["machine"], report["peak"]["measured"]
    lines = machine_lines(report)
    memory = MEMORY[m["device_type"] == "cuda"]
    peak_of = lambda variant_precision: peak.get("bf16" if variant_precision == "bf16-mixed" else "fp32")  # noqa: E731
    precisions = {v["name"]: v["precision"] for v in report["settings"]["variants"]}
    rows = []
    for r in report["models"]:
        gflops = r["train_img_s"] * r["train_flops_per_image"] / 1e9
        rows.append([r["model"], r["variant"], r["batch_size"], f"{r['params']:,}", f"{r['train_img_s']:,.0f}",
                     f"{gflops:,.1f}", f"{gflops / peak_of(precisions[r['variant']]):.0%}", f"{r['infer_img_s']:,.0f}",
                     f"{r['train_peak_mem_mib']:,.0f}"])
    lines += ["(a) The bare training step (one batch on the device); of peak: its GFLOP/s as a fraction of "
              "the measured matrix product of the precision it ran in (fp32 or bf16):", ""]
    lines += table(["model", "variant", "batch", "params", "train img/s", "GFLOP/s (6 x MACs)", "of peak",
                    "inference img/s", memory], rows)
    lines += paths_tables(report) if "paths" in report else []
    if "defaults" in report:
        dc = report["defaults"]
        lines += [f"(d) train.py's Lightning step of {dc['model']} (batch {dc['batch_size']}, tensor pipeline) per "
                  "performance option, interleaved; compile time is in the warm-up:", ""]
        lines += table(["performance", "threads", "channels_last", "compile", "ms/step", "img/s", "speed-up"], [
            [r["name"], r["applied"].get("threads", "torch's"), r["applied"].get("channels_last"),
             r["applied"].get("compile"), f"{r['ms']:.1f}", f"{r['img_s']:,.0f}", f"{r['speedup']:.2f}x"]
            for r in dc["runs"]])
    if "packing" in report:
        pk = report["packing"]
        lines += [f"(f) {pk['model']} trained by k runs at once on one {m['device_type']} device (k processes, "
                  f"each train.py's Lightning step over the tensor pipeline, batch {pk['batch_size']}, "
                  f"{pk['precision']}{', channels_last' if pk['channels_last'] else ''}, timed over the same "
                  f"{pk['seconds']} s after a warm-up):", ""]
        lines += table(["runs at once (k)", "threads per run", "images/s, all runs", "images/s per run",
                        "speed-up over k = 1"], [
            [r["k"], r["threads_per_run"], _g(r["images_per_s"]),
             " ".join(f"{v:,.0f}" for v in r["per_run_images_per_s"]) or r["error"][:80],
             f"{r['speedup']:.2f}x" if r["speedup"] else "?"] for r in pk["rows"]])
    if "speedrun" in report:
        sr = report["speedrun"]
        lines += [f"(e) Speedrun (`{sr['command']}`): exit {sr['returncode']}, time to 94 % val accuracy "
                  f"{sr['time_to_target_s']} s (compile excluded), test accuracy {sr['test/acc']}, wall time "
                  f"{sr['wall_time_s']} s for {sr['epochs']} epochs. Published: airbench94 2.59-3.83 s, a ResNet-18 "
                  "about 7 min, on an A100.", ""]
        lines += [sr["error"]] if sr["error"] else []
    return "\n".join(lines)


def speedrun(train_script: Path, overrides: list[str], out: Path) -> dict:
    """train.py experiment=speedrun in a subprocess; its metrics.json (time to 94 %, test accuracy, wall time)."""
    run_dir = out / "speedrun"
    command = [sys.executable, str(train_script), "experiment=speedrun", f"hydra.run.dir={run_dir}",
               "trainer.enable_progress_bar=false", *overrides]
    done = subprocess.run(command, capture_output=True, text=True)
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
    return {"command": " ".join(command[1:]), "returncode": done.returncode,
            "error": done.stderr[-2000:] if done.returncode else "",
            **{key: metrics.get(key)
               for key in ("time_to_target_s", "test/acc", "val/acc_best", "epochs", "wall_time_s")}}
