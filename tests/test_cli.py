"""The command line as a user meets it: help, composed configs, and one-line errors."""

from __future__ import annotations

import pytest

from helpers import run_script


def assert_one_line_error(result, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]  # the last word, not buried in a log
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_help_lists_the_groups_and_their_options():
    result = run_script("train.py", "--help")
    assert result.returncode == 0
    for group, option in [("model", "lenet5"), ("model", "resnet18"), ("data", "digits"), ("optimizer", "adam"),
                          ("scheduler", "cosine"), ("trainer", "gpu"), ("logger", "tensorboard"),
                          ("activation", "tanh")]:
        line = next((out for out in result.stdout.splitlines() if out.startswith(f"{group}:")), "")
        assert option in line, (group, option, result.stdout[:3000])


def test_cfg_job_prints_the_composed_config():
    result = run_script("train.py", "--cfg", "job", "model=resnet18", "optimizer=adam", "activation=tanh")
    assert result.returncode == 0, result.stderr
    assert "name: resnet18" in result.stdout
    assert "_target_: torch.optim.Adam" in result.stdout
    assert "activation: tanh" in result.stdout


def test_unknown_model_is_one_line_naming_it_and_the_valid_ones(tmp_path):
    result = run_script("train.py", "model=resnet999", f"hydra.run.dir={tmp_path}")
    assert_one_line_error(result, "resnet999", "lenet5", "resnet18")


def test_unknown_optimizer_in_a_sweep_is_refused_before_any_run(tmp_path):
    result = run_script("train.py", "-m", "optimizer=adam,adamx", f"hydra.sweep.dir={tmp_path}")
    assert_one_line_error(result, "adamx", "adamw", "sgd")
    assert not any(tmp_path.iterdir())


def test_missing_cifar10_names_the_directory_and_how_to_download(tmp_path):
    empty = tmp_path / "no_data_here"
    result = run_script("train.py", "data=cifar10", "data.download=false", f"paths.data_dir={empty}",
                        f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(result, str(empty), "download")


def test_evaluate_without_ckpt_path():
    result = run_script("evaluate.py")
    assert_one_line_error(result, "ckpt_path or weights is required")


def test_evaluate_with_a_path_that_does_not_exist(tmp_path):
    result = run_script("evaluate.py", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert_one_line_error(result, "nope.ckpt", "does not exist")


def test_bad_value_of_a_known_option_is_one_line(tmp_path):
    result = run_script("train.py", "experiment=smoke", "data.augment=sideways", f"hydra.run.dir={tmp_path}")
    assert_one_line_error(result, "sideways", "standard")


def test_a_command_that_fails_its_checks_or_only_prints_leaves_no_run_dir(tmp_path):
    """Each of these created an empty outputs/<time>_... dir (22 of 70 after a README walk-through)."""
    commands = [("train.py", "experiment=smoke", "trainer=gpu"),  # no GPU here
                ("train.py", "experiment=smoke", "data=cifar10", "data.download=false",
                 f"paths.data_dir={tmp_path / 'none'}"),
                ("evaluate.py", "weights=no-such-weights"), ("evaluate.py",),
                ("summarize.py", "model=lenet5", "data=digits")]  # prints its table, writes nothing
    for script, *overrides in commands:
        result = run_script(script, *overrides, cwd=tmp_path)
        assert ("error: " in result.stderr) == (script != "summarize.py"), result.stderr[-2000:]
        assert not (tmp_path / "outputs").exists(), (script, overrides, list((tmp_path / "outputs").rglob("*")))


HELP_GROUPS = {  # the groups each entry point's config composes; never _base, recipe (internal) or another's groups
    "train.py": ["activation", "callbacks", "data", "debug", "experiment", "hparams_search", "logger", "loss", "model",
                 "optimizer", "paths", "performance", "regularization", "scheduler", "trainer"],
    "evaluate.py": ["logger", "paths", "trainer"],
    "summarize.py": ["activation", "data", "model", "paths"],
    "compare.py": [], "benchmark.py": []}
HEAVY = ("torch", "lightning", "torchvision", "torchmetrics", "matplotlib")


@pytest.mark.parametrize("script", list(HELP_GROUPS))
def test_help_lists_only_the_groups_its_entry_point_reads_and_imports_no_torch(script, tmp_path):
    result = run_script(script, "--help", cwd=tmp_path, flags=("-X", "importtime"))  # every import on stderr
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    groups = (lines[lines.index("== Configuration groups ==") + 3:lines.index("== Config ==") - 1]
              if HELP_GROUPS[script] else [])
    assert [line.split(":")[0] for line in groups] == HELP_GROUPS[script]
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
