"""The command line as a user meets it: help, composed configs, and one-line errors."""

from __future__ import annotations

import pytest
import torch

from helpers import run_script
from inprocess import one_line, run_entry


def assert_one_line_error(code: int, stderr: str, *needles: str) -> None:
    assert code == 2, stderr[-2000:]
    line = one_line(stderr)  # one "error: " line, no traceback
    assert stderr.strip().splitlines()[-1] == line  # the last word, not buried in a log
    for needle in needles:
        assert needle in line, line


def test_cfg_job_prints_the_composed_config():
    result = run_script("train.py", "--cfg", "job", "model=resnet18", "optimizer=adam", "activation=tanh")
    assert result.returncode == 0, result.stderr
    assert "name: resnet18" in result.stdout
    assert "_target_: torch.optim.Adam" in result.stdout
    assert "activation: tanh" in result.stdout


# Run in this process (tests/inprocess.py) as `python <script> <argv>` would, from an empty folder; the exit status
# of a real process is checked below (a command that only prints) and in tests/reliability/test_trust.py.
BAD_COMMANDS = {
    "unknown model": ("train.py", ["model=resnet999", "hydra.run.dir={tmp}/run"], ["resnet999", "lenet5", "resnet18"]),
    "unknown optimizer in a sweep, refused before any run": (
        "train.py", ["-m", "optimizer=adam,adamx", "hydra.sweep.dir={tmp}/sweep"], ["adamx", "adamw", "sgd"]),
    "missing cifar10 names the directory and how to download": (
        "train.py", ["data=cifar10", "data.download=false", "paths.data_dir={tmp}/no_data_here",
                     "hydra.run.dir={tmp}/run"], ["{tmp}/no_data_here", "download"]),
    "evaluate without ckpt_path": ("evaluate.py", [], ["ckpt_path or weights is required"]),
    "evaluate with a path that does not exist": (
        "evaluate.py", ["ckpt_path={tmp}/nope.ckpt", "hydra.run.dir={tmp}/eval"], ["nope.ckpt", "does not exist"]),
    "bad value of a known option": ("train.py", ["experiment=smoke", "data.augment=sideways",
                                                 "hydra.run.dir={tmp}/run"], ["sideways", "standard"]),
    # the run dir is Hydra's default, outputs/<time>_... in the current folder
    "no GPU here": ("train.py", ["experiment=smoke", "trainer=gpu"], ["trainer.accelerator"]),
    "missing cifar10, default run dir": ("train.py", ["experiment=smoke", "data=cifar10", "data.download=false",
                                                      "paths.data_dir={tmp}/none"], ["{tmp}/none"]),
    "weights that do not exist": ("evaluate.py", ["weights=no-such-weights"], ["no-such-weights"]),
}


@pytest.mark.parametrize("case", list(BAD_COMMANDS))
def test_bad_input_is_one_line_exit_2_and_leaves_no_run_dir(case, tmp_path, capsys, monkeypatch):
    """One line naming the bad value, exit 2, and no run dir left behind (each of these created an empty
    outputs/<time>_... dir: 22 of 70 after a README walk-through); a refused sweep starts no run."""
    script, argv, needles = BAD_COMMANDS[case]
    if case == "no GPU here" and torch.cuda.is_available():
        pytest.skip("valid on a GPU machine")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, err = run_entry(script, [a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert_one_line_error(code, err, *(n.replace("{tmp}", str(tmp_path)) for n in needles))
    assert not any(work.iterdir()), list(work.rglob("*"))  # Hydra's default run dir, outputs/<time>_..., is removed
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], list(tmp_path.rglob("*"))  # nothing written anywhere
    assert not (tmp_path / "sweep").exists() or not any((tmp_path / "sweep").iterdir())  # no run of the sweep started


# a command that only prints leaves no run dir, as a user runs it (a process, from a folder of its own):
#   test_summarize.py::test_json_on_stdout_is_the_whole_output_and_adds_up_and_no_run_dir_is_left


HELP_GROUPS = {  # the groups each entry point's config composes; never _base, recipe (internal) or another's groups
    "train.py": ["activation", "callbacks", "data", "debug", "experiment", "hparams_search", "logger", "loss", "model",
                 "optimizer", "paths", "performance", "regularization", "scheduler", "trainer"],
    "evaluate.py": ["logger", "paths", "trainer"],
    "summarize.py": ["activation", "data", "model", "paths"],
    "compare.py": [], "benchmark.py": []}
HELP_OPTIONS = {"train.py": [("model", "lenet5"), ("model", "resnet18"), ("data", "digits"), ("optimizer", "adam"),
                             ("scheduler", "cosine"), ("trainer", "gpu"), ("logger", "tensorboard"),
                             ("activation", "tanh")]}
HEAVY = ("torch", "lightning", "torchvision", "torchmetrics", "matplotlib")


@pytest.mark.parametrize("script", list(HELP_GROUPS))
def test_help_lists_only_the_groups_its_entry_point_reads_and_imports_no_torch(script, tmp_path):
    result = run_script(script, "--help", cwd=tmp_path, flags=("-X", "importtime"))  # every import on stderr
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    groups = (lines[lines.index("== Configuration groups ==") + 3:lines.index("== Config ==") - 1]
              if HELP_GROUPS[script] else [])
    assert [line.split(":")[0] for line in groups] == HELP_GROUPS[script]
    for group, option in HELP_OPTIONS.get(script, []):  # each group's line lists its options
        line = next((out for out in groups if out.startswith(f"{group}:")), "")
        assert option in line, (group, option, result.stdout[:3000])
    assert "== Config ==" in lines and f"python {script}" in lines[0]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("typed,meant", [("resnet2O", "resnet20"), ("ResNet20", "resnet20"), ("vggl1", "vgg11"),
                                         ("lenet", "lenet5")])
def test_a_mistyped_model_is_answered_with_the_model_meant(typed, meant):
    """A letter O for a zero was answered with resnet32 (difflib's nearest by characters). Hydra's own error,
    read by its attributes (the group, the options), becomes the line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import MissingConfigException

    from cli.commandline import hydra_error_line
    from helpers import ROOT

    with (pytest.raises(MissingConfigException) as error,
          initialize_config_dir(str(ROOT / "configs"), version_base="1.3")):
        compose("train", overrides=[f"model={typed}"])
    line = hydra_error_line(error.value, {})
    assert line.startswith(f"model={typed!r} is not a model option (did you mean {meant}?); valid: alexnet,"), line


def test_matplotlibs_font_cache_line_is_not_shown_on_a_first_run(caplog, monkeypatch):
    """matplotlib logs "building the font cache" when building it takes over 5 s (a first run on a slow disk);
    every entry point (cli.commandline.entry_point) keeps it off the console."""
    import logging
    import sys

    from cli.commandline import entry_point
    from helpers import ROOT

    def main():
        logging.getLogger("matplotlib.font_manager").warning("Matplotlib is building the font cache; this "
                                                             "may take a moment.")
        logging.getLogger("matplotlib.font_manager").error("a real error still shows")

    monkeypatch.setattr(sys, "argv", ["compare.py"])
    monkeypatch.setattr(logging.getLogger("matplotlib.font_manager"), "level", logging.NOTSET)
    entry_point(ROOT / "configs", main)()
    shown = [record.getMessage() for record in caplog.records]
    assert shown == ["a real error still shows"]
