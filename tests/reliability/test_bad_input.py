"""Bad input gets one line naming the key, the value and what would be valid,
a non-zero exit, and leaves an earlier run in the same dir untouched."""

from __future__ import annotations

import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from helpers import ROOT, run_script

CONFIG_DIR = ROOT / "configs"

# (overrides, words the one error line must hold: the key, the value, what would be valid)
CASES = [
    (["model.dropout=1.5"], ["model.dropout", "1.5", "[0, 1)"]),
    (["model.dropout=-0.1"], ["model.dropout", "-0.1", "[0, 1)"]),
    (["optimizer.lr=0"], ["optimizer.lr", "0", "> 0"]),
    (["optimizer.lr=-1"], ["optimizer.lr", "-1", "> 0"]),
    (["data.batch_size=0"], ["data.batch_size", "0", "a positive integer"]),
    (["trainer.max_epochs=0"], ["trainer.max_epochs", "0", ">= 1"]),
    (["activation=swoosh"], ["activation", "swoosh", "swish", "relu"]),
    (["loss=nope"], ["loss", "nope", "cross_entropy"]),
    (["scheduler=nope"], ["scheduler", "nope", "cosine"]),
    (["model.activation=swoosh"], ["activation", "swoosh", "swish", "relu"]),
    (["model=resnet20", "model.stem=imagenet"], ["stem", "imagenet", "cifar"]),
    (["model=logreg", "activation=tanh"], ["activation", "tanh", "identity"]),
    (["optimizer.lr=abc"], ["optimizer.lr", "abc", "a number"]),
    (["data.batch_size=2.5"], ["data.batch_size", "2.5", "a positive integer"]),
]


@pytest.fixture
def hydra_reset():
    yield
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None  # leave no composed config behind for other tests (Lightning reads it)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("overrides,words", CASES, ids=[" ".join(o) for o, _ in CASES])
def test_each_bad_value_gets_one_line_naming_it(overrides, words, tmp_path, monkeypatch, capsys, hydra_reset):
    """The entry point's own path (command-line check, compose, build) in this process: fast."""
    import train
    from cli.commandline import entry_point

    argv = ["experiment=smoke", *overrides, f"paths.output_dir={tmp_path}"]

    def main():  # what @hydra.main does before train.build: compose, with the hydra node set, then handed over
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=sys.argv[1:], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):  # without the hydra node, as @hydra.main hands it over: the optimizer's settings are
            del cfg["hydra"]  # checked after train.build resolves the whole config, hydra's runtime dir unset here
        train.build(cfg)

    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        entry_point(CONFIG_DIR, main)()
    assert exit_.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"


def snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("overrides", [
    ["activation=swoosh"],          # refused from the command line, before Hydra starts
    ["model.dropout=1.5"],          # refused by the value rules, once composed
    ["model.activation=swoosh"],    # refused by the model builder
])
def test_a_bad_command_into_an_existing_run_dir_changes_nothing(tiny_run, overrides, capsys):
    """The first as a real process (it fails before torch is imported: a second); the two that fail once torch
    is imported run in this process (tests/inprocess.py), through the same entry point and task function."""
    from inprocess import run_entry

    run_dir, _ = tiny_run
    before = snapshot(run_dir)
    assert ".hydra/overrides.yaml" in before and "checkpoints/last.ckpt" in before
    argv = ["experiment=smoke", *overrides, "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"]
    if overrides == ["activation=swoosh"]:
        result = run_script("train.py", *argv)
        code, err = result.returncode, result.stderr
    else:
        code, err = run_entry("train.py", argv, capsys, stage="run")
    assert code == 2
    one_error_line(err)
    assert snapshot(run_dir) == before  # nothing the earlier run wrote deleted, rewritten or added to
