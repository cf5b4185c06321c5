"""One device per run in a parallel sweep: the claim logic with real concurrent processes (no GPU needed),
and a joblib sweep on the CPU that records which device each run was given."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from core.device_slots import claim_device
from helpers import ROOT, run_script
from slot_worker import claim_and_hold


def claims(tmp_path: Path, devices: int, processes: int, per_device: int = 1) -> list[tuple[int, bool]]:
    context = multiprocessing.get_context("spawn")  # as loky starts joblib's workers: fresh interpreters
    results, ready, release = context.Queue(), context.Barrier(processes), context.Event()
    workers = [context.Process(target=claim_and_hold, args=(str(tmp_path), devices, results, ready,
                                                             release, per_device))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        found = [results.get(timeout=120) for _ in workers]
    finally:
        release.set()
        for worker in workers:
            worker.join(timeout=60)
    return found


@pytest.mark.parametrize("devices", [1, 2, 4])
def test_concurrent_workers_each_get_their_own_device(tmp_path, devices):
    found = claims(tmp_path, devices, processes=devices)
    assert sorted(device for device, _ in found) == list(range(devices))
    assert not any(warned for _, warned in found)


def test_a_device_freed_by_an_ended_worker_is_claimed_again(tmp_path):
    assert sorted(d for d, _ in claims(tmp_path, 2, processes=2)) == [0, 1]
    assert sorted(d for d, _ in claims(tmp_path, 2, processes=2)) == [0, 1]  # the first pair's locks died with them


def test_more_workers_than_devices_share_with_a_warning(tmp_path):
    found = claims(tmp_path, 2, processes=3)
    assert sorted(d for d, warned in found if not warned) == [0, 1]
    assert [warned for _, warned in found].count(True) == 1


@pytest.mark.parametrize("devices, per_device", [(1, 4), (2, 2)])
def test_k_runs_per_device_fill_every_device_k_times_without_a_warning(tmp_path, devices, per_device):
    found = claims(tmp_path, devices, processes=devices * per_device, per_device=per_device)
    assert sorted(device for device, _ in found) == sorted(list(range(devices)) * per_device)
    assert not any(warned for _, warned in found)


def test_one_process_keeps_its_device_for_every_run(tmp_path):
    first = claim_device(tmp_path, 4)
    assert claim_device(tmp_path, 4) == first
    with pytest.raises(ValueError, match="at least one"):
        claim_device(tmp_path / "other", 0)
    with pytest.raises(ValueError, match="at least one"):
        claim_device(tmp_path / "other", 1, per_device=0)


def test_the_gpu_sweep_trainer_names_one_device_from_the_sweep_dir():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["trainer=gpu_sweep"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer._content["devices"]._value() == "${device_slot:${hydra:sweep.dir}}"


@pytest.mark.slow  # two train.py runs in joblib workers: about a minute on 2 cores
def test_a_joblib_sweep_gives_its_two_workers_two_devices(tmp_path):
    """train.py -m with the joblib launcher, on the CPU: each run records the slot its worker claimed."""
    result = run_script("train.py", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "experiment=smoke",
                        "seed=1,2", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                        "trainer.limit_val_batches=1",
                        "trainer.limit_test_batches=1", "logger=none", "trainer.enable_progress_bar=false",
                        "+device='${device_slot:${hydra:sweep.dir},2}'", "hydra.sweep.subdir=${hydra.job.num}",
                        f"hydra.sweep.dir={tmp_path}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoints = sorted(tmp_path.glob("*/checkpoints/last.ckpt"))  # their config, resolved in the worker that ran them
    configs = [torch.load(path, weights_only=True)["hyper_parameters"]["config"] for path in checkpoints]
    assert len(configs) == 2
    assert sorted(c["device"][0] for c in configs) == [0, 1]
