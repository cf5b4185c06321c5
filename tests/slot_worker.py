"""The worker of tests/test_device_slots.py, in a module of its own that imports no torch: each ``spawn``ed worker
imports this file alone (a fresh interpreter, as loky starts joblib's workers), in milliseconds instead of the
test module's seconds of torch and Hydra."""

from __future__ import annotations

import warnings

from core.device_slots import claim_device


def claim_and_hold(lock_dir: str, devices: int, results, ready, release, per_device: int = 1) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        device = claim_device(lock_dir, devices, per_device)
    results.put((device, bool(caught)))
    ready.wait()  # hold the device until every worker has claimed one, like joblib workers that live on
    release.wait()
