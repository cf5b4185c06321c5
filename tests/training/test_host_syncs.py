"""A training step of train.py, as it runs on a GPU, reads nothing back to the host: a read (``.item()``,
``float(t)``, a progress-bar value) makes the CPU wait for the GPU, so the next step's work can no longer
be queued while this one computes, and Lightning's per-step overhead is added to every step (issue 21).

On the CPU a read costs nothing, so the test looks for the calls by name (tests/helpers.py host_reads) over
steps of train.py's own module, callbacks, logger and tensor pipeline, built by train.build. On a GPU,
benchmark.py counts the real synchronizations with torch.cuda.set_sync_debug_mode.
"""

from __future__ import annotations

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from helpers import ROOT, host_reads

STEPS = range(2, 42)  # after a warm-up of 2 steps; none of them a logging step (every 50th)


@pytest.fixture
def hydra_reset():
    yield
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None  # leave no composed config behind for other tests (Lightning reads it)


class Window(L.Callback):
    """Counts the reads of the training steps in STEPS, not those of validation or the epoch's end."""

    def __init__(self, reads) -> None:
        self.reads = reads

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.reads.counting = batch_idx in STEPS

    def on_validation_start(self, trainer, pl_module) -> None:
        self.reads.counting = False


def steps_reads(tmp_path, *overrides: str) -> list:
    import train
    from cli.resolvers import register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "optimizer=nesterov", "data.batch_size=16",
                                          "trainer.max_epochs=1", "trainer.log_every_n_steps=50",
                                          f"paths.output_dir={tmp_path}", "test=false", *overrides],
                      return_hydra_config=True)
    with open_dict(cfg):  # what a Hydra run fills in
        cfg.hydra.runtime.output_dir, cfg.hydra.runtime.cwd = str(tmp_path), str(ROOT)
    HydraConfig.instance().set_config(cfg)
    datamodule, module, trainer = train.build(cfg)
    reads = host_reads()
    trainer.callbacks.insert(0, Window(reads))
    with reads:
        trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step > max(STEPS)
    return reads.calls


def test_a_training_step_as_on_a_gpu_reads_nothing_back(tmp_path, hydra_reset):
    # callbacks.divergence_guard.every_n_steps=50 is what the guard does on a GPU (on the CPU it reads every loss)
    calls = steps_reads(tmp_path, "callbacks.divergence_guard.every_n_steps=50")
    assert calls == [], f"{len(calls)} host reads in {len(STEPS)} steps, e.g. {calls[:3]}"


def test_the_detector_sees_the_reads_of_the_cpu_guard(tmp_path, hydra_reset):
    # the control: on the CPU the guard reads every loss (free there), one .item() per step
    calls = steps_reads(tmp_path)
    assert len(calls) == len(STEPS) and {name for name, _ in calls} == {"item"}, calls[:3]
    assert all("on_before_backward" in where for _, where in calls)
