"""training.loggers.CSVLogger: a resumed run's metrics.csv keeps the rows logged before the checkpoint it
resumes from, as they were written, and goes on from there (in process: the end-to-end resume through
train.py is tests/test_run_output.py's)."""

from __future__ import annotations

import warnings

from training.loggers import CSVLogger


def first_run(folder) -> list[str]:
    """Five steps as a run logs them (Lightning adds ``epoch`` as an int); the lines of its metrics.csv."""
    logger = CSVLogger(save_dir=folder, name="", version="")
    for step in range(5):
        logger.log_metrics({"train/loss_step": 1.0 / (step + 1), "epoch": step // 2}, step=step)
    logger.log_metrics({"val/acc": 0.25, "epoch": 1}, step=3)
    logger.finalize("success")
    return (folder / "metrics.csv").read_text().splitlines()


def test_a_resume_keeps_the_rows_before_its_checkpoint_as_they_were_written(tmp_path):
    before = first_run(tmp_path)
    resumed = CSVLogger(save_dir=tmp_path, name="", version="", purge_step=3)  # the checkpoint was taken at step 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not "Experiment logs directory ... exists and is not empty"
        resumed.experiment  # noqa: B018 -- the property creates the logger's directory: the access is the test
    kept = [line for line in before[1:] if int(line.split(",")[before[0].split(",").index("step")]) < 3]
    # the same text: the header (val/acc too, logged only after step 3), "epoch" 0 and 1, the empty cells
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [before[0], *kept]
    resumed.log_metrics({"train/loss_step": 0.125, "train/lr": 0.1, "epoch": 1}, step=3)
    resumed.finalize("success")
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,step,train/loss_step,train/lr,val/acc"  # a new column: Lightning rewrites the header
    assert lines[1:] == ["0,0,1.0,,", "0,1,0.5,,", "1,2,0.3333333333333333,,", "1,3,0.125,0.1,"]


def test_a_new_run_in_a_folder_with_a_metrics_csv_starts_it_over(tmp_path):
    first_run(tmp_path)
    fresh = CSVLogger(save_dir=tmp_path, name="", version="")  # no purge_step: Lightning's own behaviour
    fresh.log_metrics({"train/loss_step": 2.0, "epoch": 0}, step=0)
    fresh.finalize("success")
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch,step,train/loss_step", "0,0,2.0"]
