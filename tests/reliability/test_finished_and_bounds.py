"""Issue 20, items 8 and 9: resuming a finished run changes nothing; sizes are bounded before allocation.

Resuming a finished run rewrote its metrics.json (validation metrics gone, images/s from 7,074 to
386,303); a card with image_size 30000 or summarize.py input_size=20000 asked for gigabytes to
hundreds of gigabytes before any check. Now each is one line, exit 2, and nothing is written."""

from __future__ import annotations

import json

import pytest

from inprocess import copy_run, digest, one_line, run_entry


def test_resuming_a_finished_run_says_so_and_changes_nothing(tiny_run, capsys):
    run_dir, _ = tiny_run
    before = digest(run_dir)
    code, err = run_entry("train.py", [f"resume={run_dir}"], capsys, stage="run")
    line = one_line(err)
    assert code == 2 and "this run is finished" in line and "trainer.max_epochs=" in line, line
    assert digest(run_dir) == before


def test_a_finished_run_without_a_run_length_schedule_may_be_trained_longer(unfinished_run, tmp_path, capsys):
    run = copy_run(unfinished_run, tmp_path / "run")
    (run / "metrics.json").write_text(json.dumps({"status": "completed", "epochs": 1}))
    code, err = run_entry("train.py", [f"resume={run}"], capsys)
    assert code == 2 and "this run is finished (1 of 1 epochs done" in one_line(err)
    code, err = run_entry("train.py", [f"resume={run}", "trainer.max_epochs=2"], capsys)
    assert code in (0, None), err[-3000:]  # scheduler=none: more epochs are the user's to ask for


def edit_card(path, **changes) -> None:
    card = json.loads(path.read_text())
    for key, value in changes.items():
        node = card
        *parents, last = key.split("__")
        for parent in parents:
            node = node[parent]
        node[last] = value
    path.write_text(json.dumps(card))


@pytest.mark.parametrize("script,argv,says", [
    ("summarize.py", ["input_size=20000"], "input_size=20000: at most 1024 pixels a side"),
    ("summarize.py", ["input_size=[20000,32]"], "at most 1024 pixels a side"),
    ("train.py", ["experiment=smoke", "data.image_size=30000"],
     "data.image_size must be an integer in [1, 1024], got 30000"),
    ("benchmark.py", ["image_size=30000"], "image_size=30000 is not valid: it must be an integer in [8, 1024]"),
])
def test_an_image_size_is_bounded_before_anything_is_allocated(script, argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = run_entry(script, argv, capsys, stage="run")
    assert code == 2 and says in one_line(err)


def test_a_card_s_image_size_is_bounded_before_anything_is_allocated(shipped_card, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    edit_card(shipped_card, data__image_size=30000)
    code, err = run_entry("evaluate.py", [f"weights={shipped_card.with_suffix('.pth')}", "data.data_dir=data"], capsys)
    assert code == 2 and "the card: its data.image_size must be an integer in [1, 1024], got 30000" in one_line(err)
