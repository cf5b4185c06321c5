"""Issue 20, items 4 and 10: no write follows a symbolic link, and an image folder follows none.

A symlinked train.log got a resumed run's log lines; compare.py overwrote the targets of symlinked
val_acc.png / test_acc_vs_params.png; an image folder with a link loop gave 4,920 training images
instead of 120. Now a write into a run or sweep dir through a link is refused with one line naming the
link, and an image folder's links are skipped (one warning line counts them)."""

from __future__ import annotations

import json
import logging
import os

import pytest
import yaml
from PIL import Image

from core.files import LinkRefused, atomic_write, write_text
from helpers import image_folder
from inprocess import copy_run, digest, one_line, run_entry


@pytest.mark.parametrize("name", ["train.log", "metrics.json", "manifest.json", ".hydra/config.yaml", "checkpoints"])
def test_resume_refuses_a_run_dir_holding_a_link(name, unfinished_run, canaries, tmp_path, capsys):
    run = copy_run(unfinished_run, tmp_path / "run")
    link = run / name
    if link.is_dir():
        os.rename(link, canaries.root / "moved_checkpoints")
        os.symlink(canaries.root / "moved_checkpoints", link)  # the resume would write its checkpoints out there
        canaries.before = digest(canaries.root)
    else:
        link.unlink(missing_ok=True)
        os.symlink(canaries.file, link)
    before = digest(run)
    code, err = run_entry("train.py", [f"resume={run}", "trainer.max_epochs=2"], capsys, stage="run")
    assert code == 2 and str(link) in one_line(err) and "symbolic link" in one_line(err), err[-3000:]
    assert canaries.untouched() and digest(run) == before


def make_sweep(root, runs=3):
    for i in range(runs):
        hydra = root / f"seed={i}" / ".hydra"
        hydra.mkdir(parents=True)
        (hydra / "config.yaml").write_text(yaml.safe_dump({"task_name": "train", "seed": i,
                                                           "model": {"name": "lenet5"}}))
        (hydra / "overrides.yaml").write_text(yaml.safe_dump([f"seed={i}"]))
        (root / f"seed={i}" / "metrics.json").write_text(json.dumps({"test/acc": 0.5 + i / 10, "params": 100,
                                                                     "status": "completed"}))
    return root


@pytest.mark.parametrize("name", ["val_acc.png", "test_acc_vs_params.png", "comparison.md"])
def test_compare_refuses_to_write_through_a_link_and_writes_nothing(name, canaries, tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep")
    os.symlink(canaries.file, sweep / name)
    before = digest(sweep)
    code, err = run_entry("compare.py", [f"dir={sweep}"], capsys, stage="run")
    assert code == 2 and str(sweep / name) in one_line(err) and "symbolic link" in one_line(err), err[-3000:]
    assert canaries.untouched() and digest(sweep) == before  # checked before the first output is written


def test_an_atomic_write_never_goes_through_a_link_to_a_file_or_a_folder(canaries, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(canaries.file, run / "metrics.json")
    os.symlink(canaries.folder, run / "figures")
    with pytest.raises(LinkRefused, match="metrics.json is a symbolic link"):
        write_text(run / "metrics.json", "{}", root=run)
    with pytest.raises(LinkRefused, match="figures is a symbolic link"):
        atomic_write(run / "figures" / "inside.txt", lambda handle: handle.write(b"x"), root=run)
    assert canaries.untouched()


def folder_with_links(root, outside):
    """2 classes x 3 images in train/ and test/, plus a link loop, a linked folder and a linked file."""
    image_folder(root, size=8, suffix=".png")
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "stray.png")
    os.symlink("..", root / "train" / "cat" / "loop")  # ln -s .. train/cat/loop: the tree again, and again
    os.symlink(outside, root / "train" / "dog" / "elsewhere")  # a way out of the tree
    os.symlink(root / "test" / "dog" / "0.png", root / "train" / "dog" / "copy.png")  # a test image into train
    os.symlink(outside, root / "train" / "bird")  # a linked class folder
    return root


@pytest.mark.parametrize("pipeline", ["tensor", "torchvision"])
def test_an_image_folder_follows_no_symbolic_link(pipeline, tmp_path, caplog):
    from datamodules import ImageFolderDataModule

    root = folder_with_links(tmp_path / "images", tmp_path / "outside")
    data = ImageFolderDataModule(root=str(root), data_dir=str(tmp_path / "cache"), val_size=2, batch_size=2,
                                 pipeline=pipeline)
    with caplog.at_level(logging.WARNING, logger="datamodules.image_folder"):
        data.setup("fit")
    assert data.classes == ["cat", "dog"]
    assert len(data.train_set) + len(data.val_set) == 6 and len(data.test_set) == 6
    lines = [r.getMessage() for r in caplog.records if "symbolic links" in r.getMessage()]
    assert len(lines) == 1 and "3 symbolic links in train/ not followed" in lines[0], lines
