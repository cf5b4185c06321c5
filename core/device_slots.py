"""One GPU per run in a parallel sweep: each process of the sweep claims a device no other
live process of the same sweep holds.

Hydra's joblib launcher runs a sweep's jobs in ``n_jobs`` worker processes, handing each
worker the next job as soon as it is free, so a job's number says nothing about which
devices are busy (job 2 may start while job 0 still runs, on the device 2 % 2 = 0 it would
get). Instead every worker takes, the first time its config asks, an exclusive lock on one
file per device in the sweep dir (``<sweep dir>/.device_locks/<k>.lock``, ``fcntl.flock``)
and keeps it for its lifetime: with ``n_jobs`` equal to the number of devices every worker
holds its own device, and the operating system releases a lock when its process ends, even
killed. The basic launcher (one process) always gets device 0, one run at a time.

    python train.py -m hydra/launcher=joblib hydra.launcher.n_jobs=4 trainer=gpu_sweep model=resnet18,vgg11_bn seed=1,2

``trainer=gpu_sweep`` sets ``trainer.devices: ${device_slot:${hydra:sweep.dir}}`` (the
number of devices defaults to the GPUs visible; a second argument fixes it). A third
argument packs several runs on each device: ``${device_slot:${hydra:sweep.dir},1,4}``
with ``n_jobs=4`` runs four at once on one GPU (small models leave most of a GPU idle:
benchmark.py's packing measures it). The resolver is registered by cli/resolvers.py, in
the entry point and in every worker process.
"""

from __future__ import annotations

import fcntl
import os
import warnings
from pathlib import Path

from core.errors import UserError

_held: dict[tuple[str, int], tuple[int, object]] = {}  # (lock dir, devices) -> (device, open lock file)


def claim_device(lock_dir: str | os.PathLike, devices: int, per_device: int = 1) -> int:
    """The index of a device among ``devices`` on which fewer than ``per_device`` other processes of this
    sweep hold a slot; this process holds its slot until it exits (asking again returns the same device).
    Slots are taken device by device first, so runs spread over the devices. More processes than
    slots: they share, spread by process id, with a warning."""
    if devices < 1 or per_device < 1:
        raise UserError(f"device_slot: {devices} devices, {per_device} runs per device; a sweep with runs on devices "
                        "needs at least one of each")
    key = (str(Path(lock_dir).resolve()), devices, per_device)
    if key in _held:
        return _held[key][0]
    locks = Path(key[0]) / ".device_locks"
    locks.mkdir(parents=True, exist_ok=True)
    for slot in range(per_device):
        for device in range(devices):
            handle = open(locks / (f"{device}.lock" if slot == 0 else f"{device}.{slot}.lock"), "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            _held[key] = (device, handle)
            return device
    device = os.getpid() % devices
    warnings.warn(f"device_slot: every one of the {devices * per_device} slots ({devices} devices x {per_device} runs) "
                  f"is held by another run of this sweep; sharing device {device} (set "
                  f"hydra.launcher.n_jobs to at most {devices * per_device})")
    return device


def device_slot(lock_dir: str, devices: int | None = None, per_device: int = 1) -> list[int]:
    """The resolver: ``[k]``, a ``trainer.devices`` value naming the claimed device. ``devices``: null for
    every GPU visible; ``per_device``: how many runs of the sweep share one device at once."""
    if devices is None:
        import torch

        devices = torch.cuda.device_count()
    return [claim_device(lock_dir, int(devices), int(per_device))]
