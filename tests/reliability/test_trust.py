"""The trust boundary (DESIGN.md): command lines and configs/ name code; checkpoints and run
dirs handed to us name options only. Bad input of every kind gets one line and exit 2, before
anything is built or written, and a bug keeps its traceback.

The battery runs each entry point's own path in this process (command-line rewrite and checks,
compose, build), so that its 70-odd cases take seconds, not a subprocess each."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
import yaml
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from PIL import Image

from helpers import ROOT, image_folder, run_script
from inprocess import copy_run, digest, one_line, run_entry, run_entry_output


@pytest.fixture(autouse=True)
def hydra_reset():
    yield
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None  # leave no composed config behind for other tests (Lightning reads it)


# ---- checkpoints that name code ------------------------------------------------------------------

def hostile_variants(target):
    """(name, where in the stored config, the node) that would write ``target`` if instantiated."""
    path = {"_target_": "pathlib.Path", "_args_": [str(target)]}
    return {
        "write_text": ("data", {"_target_": "pathlib.Path.write_text", "_args_": [path, "import os\n"]}),
        "open": ("data", {"_target_": "builtins.open", "_args_": [str(target), "w"]}),
        "copyfile": ("data", {"_target_": "shutil.copyfile", "_args_": [__file__, str(target)]}),
        "os.system": ("data", {"_target_": "os.system", "_args_": [f"touch '{target}'"]}),
        "inside model": ("model.activation", {"_target_": "pathlib.Path.write_text", "_args_": [path, "x"]}),
        "model target": ("model", {"_target_": "builtins.open", "_args_": [str(target), "w"]}),
    }


def plant(run_dir, name, target):
    """Copy of the tiny run whose checkpoints store the hostile node ``name``."""
    where, node = hostile_variants(target)[name]
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        config = checkpoint["hyper_parameters"]["config"]
        parent, _, key = where.rpartition(".")
        (config[parent] if parent else config)[key] = copy.deepcopy(node)
        torch.save(checkpoint, path)
        torch.load(path, map_location="cpu", weights_only=True)  # loads fine with weights_only: that is the point


def test_the_control_instantiating_a_stored_node_does_write_the_file(tmp_path):
    target = tmp_path / "X.pth"
    instantiate(hostile_variants(target)["write_text"][1])
    assert target.exists()


@pytest.mark.parametrize("name", list(hostile_variants("x")))
@pytest.mark.parametrize("script,argument", [("evaluate.py", "ckpt_path"), ("train.py", "resume")])
def test_a_checkpoint_naming_code_is_refused(tiny_run, tmp_path, name, script, argument, capsys, monkeypatch):
    source, _ = tiny_run
    run_dir = tmp_path / "run"
    subprocess.run(["cp", "-r", str(source), str(run_dir)], check=True)
    target = tmp_path / "X.pth"
    plant(run_dir, name, target)
    monkeypatch.chdir(tmp_path)
    before = digest(run_dir)
    code, err = run_entry(script, [f"{argument}={run_dir / 'checkpoints' / 'last.ckpt'}"], capsys)
    assert code == 2
    line = one_line(err)
    assert "last.ckpt" in line and "refused" in line and "_target_" in line, line
    assert not target.exists() and digest(run_dir) == before


def test_evaluate_as_a_user_runs_it_refuses_the_issues_checkpoint(tiny_run, tmp_path):
    source, _ = tiny_run
    checkpoint = torch.load(source / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["config"]["data"] = hostile_variants("X.pth")["write_text"][1]
    torch.save(checkpoint, tmp_path / "hostile.ckpt")
    result = run_script("evaluate.py", f"ckpt_path={tmp_path / 'hostile.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}",
                        cwd=tmp_path)
    assert result.returncode == 2
    assert "pathlib.Path.write_text" in one_line(result.stderr)
    assert not (tmp_path / "X.pth").exists()


@pytest.mark.parametrize("override,says", [
    ("data._target_=pathlib.Path.write_text", "data._target_"),
    ("+callbacks.evil._target_=os.system", "callbacks.evil._target_"),
    ("trainer.default_root_dir={_target_:builtins.open}", "not a plain value"),
    ("data.data_dir=${oc.env:HOME}", "interpolation"),
    ("hydra.job.chdir=true", "hydra.job.chdir"),
])
def test_a_run_dir_whose_overrides_name_code_is_refused(tiny_run, tmp_path, override, says, capsys):
    source, _ = tiny_run
    run_dir = tmp_path / "run"
    subprocess.run(["cp", "-r", str(source), str(run_dir)], check=True)
    overrides = run_dir / ".hydra" / "overrides.yaml"
    overrides.write_text(yaml.safe_dump([*yaml.safe_load(overrides.read_text()), override]))
    before = digest(run_dir)
    code, err = run_entry("train.py", [f"resume={run_dir}"], capsys)
    assert code == 2 and says in one_line(err) and "refused" in one_line(err)
    assert digest(run_dir) == before


@pytest.mark.parametrize("node, key, value, words", [
    ("data", "num_workers", -1, ["data.num_workers", "-1", ">= 0"]),
    ("data", "image_size", 30000, ["data.image_size", "30000", "[1, 1024]"]),
    # the builder's rule, named as the file stores it (the file, then config.model.<key>)
    ("model", "batchnorm", "maybe", [".ckpt: its stored config.model.batchnorm", "maybe", "true or false"]),
    ("model", "dropout", 1.5, [".ckpt: its stored config.model.dropout", "1.5"]),
])
def test_evaluate_refuses_a_checkpoint_storing_a_bad_value_when_the_part_is_built(tiny_run, tmp_path, capsys, node,
                                                                                  key, value, words):
    """reporting/trust.py checks that a checkpoint names options, not code; the values are checked by the data module
    and the model builder that take them (issue 23): one line, exit 2, nothing written."""
    run_dir = copy_run(tiny_run[0], tmp_path / "run")
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        checkpoint["hyper_parameters"]["config"][node][key] = value
        torch.save(checkpoint, path)
    before, out = digest(run_dir), tmp_path / "eval"
    code, err = run_entry("evaluate.py", [f"ckpt_path={run_dir}", f"hydra.run.dir={out}", f"paths.output_dir={out}"],
                          capsys)
    assert code == 2, err
    line = one_line(err)
    assert all(word in line for word in words), line
    assert digest(run_dir) == before and not any(out.rglob("*"))


def test_a_checkpoint_written_when_configs_named_torchs_cross_entropy_still_names_no_code():
    from reporting.trust import check_no_code

    check_no_code({"loss": {"_target_": "torch.nn.CrossEntropyLoss", "label_smoothing": 0.0}}, "old.ckpt")


def test_a_clean_checkpoint_still_rebuilds_through_the_registries(tiny_run):
    from reporting.trust import build_datamodule, build_model, stored_config

    source, _ = tiny_run
    checkpoint = torch.load(source / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    config = stored_config(checkpoint, "last.ckpt")
    datamodule = build_datamodule(config, "last.ckpt")
    net = build_model(config, "last.ckpt", num_classes=datamodule.num_classes, in_channels=datamodule.in_channels)
    assert datamodule.name == "digits" and type(net).__name__ == "LeNet5"
    assert net.state_dict().keys() == {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items()
                                       if k.startswith("net.")}.keys()


def test_cfg_job_with_resume_prints_the_resumed_runs_config_and_writes_nothing(tiny_run, tmp_path, capsys):
    """Hydra answers --cfg before the task function, with the command's own config (seed 42, smoke's 10 epochs);
    the run that resume= would continue has its own overrides, then the ones given now."""
    run_dir = copy_run(tiny_run[0], tmp_path / "run")
    before = digest(run_dir)
    code, out, err = run_entry_output("train.py", [f"resume={run_dir}", "trainer.limit_val_batches=2", "--cfg", "job"],
                                      capsys)
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed["seed"] == 3 and printed["trainer"]["max_epochs"] == 1  # the run's own (tiny_args)
    assert printed["trainer"]["limit_val_batches"] == 2  # given now
    assert printed["resume"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert digest(run_dir) == before and [p.name for p in tmp_path.iterdir()] == ["run"]


# ---- the battery: one line, exit 2, naming the bad value; an earlier run dir untouched ---------------

TRAIN_CASES = [
    # unknown keys: the valid keys of the node and the nearest
    (["foo=1"], ["foo", "valid keys", "optimizer"]),
    (["optimizer.lrr=0.1"], ["optimizer.lrr", "did you mean optimizer.lr", "weight_decay"]),
    (["model.dropoutt=0.1"], ["model.dropoutt", "did you mean model.dropout"]),
    (["data.batch_sizee=3"], ["data.batch_sizee", "did you mean data.batch_size"]),
    (["trainer.max_epoch=3"], ["trainer.max_epoch", "did you mean trainer.max_epochs"]),
    (["model=lenet5", "model.shortcut=B"], ["model.shortcut", "valid keys of model"]),
    (["optimizer.lr=[1"], ["optimizer.lr=[1", "key=value"]),
    # group options
    (["model=resnet999"], ["resnet999", "lenet5", "resnet18"]),
    (["optimizer=adamx"], ["adamx", "adamw", "sgd"]),
    (["activation=swoosh"], ["activation", "swoosh", "swish"]),
    (["loss=nope"], ["loss", "nope", "cross_entropy"]),
    (["scheduler=nope"], ["scheduler", "nope", "cosine"]),
    (["data=cifar11"], ["cifar11", "cifar10"]),
    (["trainer=tpu9"], ["tpu9", "cpu"]),
    # values, including the non-finite ones
    (["optimizer.lr=inf"], ["optimizer.lr", "inf", "> 0", "finite"]),
    (["optimizer.lr=-inf"], ["optimizer.lr", "-inf", "> 0"]),
    (["optimizer.lr=nan"], ["optimizer.lr", "nan", "> 0"]),
    (["optimizer.lr=0"], ["optimizer.lr", "0", "> 0"]),
    (["optimizer.lr=-1"], ["optimizer.lr", "-1", "> 0"]),
    (["optimizer.lr=abc"], ["optimizer.lr", "abc", "a number"]),
    (["optimizer.lr=${nope}"], ["optimizer.lr", "nope"]),
    # torch.optim's own check (weight_decay >= 0), in its words, with its default: a valid value
    (["optimizer.weight_decay=-1"], ["optimizer.weight_decay", "-1", "Invalid weight_decay value", "default: 0"]),
    (["optimizer.weight_decay=inf"], ["optimizer.weight_decay", "inf", "finite"]),
    (["optimizer.betas=[0.9,1.5]"], ["optimizer.betas", "1.5", "Invalid beta parameter", "default: (0.9, 0.999)"]),
    (["optimizer=nesterov", "optimizer.momentum=0"], ["optimizer", "SGD", "Nesterov momentum requires a momentum"]),
    (["optimizer=sgd", "optimizer.momentum=1"], ["optimizer.momentum", "1", "[0, 1)"]),
    (["optimizer=sgd", "optimizer.momentum=nan"], ["optimizer.momentum", "nan", "[0, 1)"]),
    (["optimizer=rmsprop", "optimizer.alpha=1"], ["optimizer.alpha", "1", "[0, 1)"]),
    (["+optimizer.eps=0"], ["optimizer.eps", "0", "> 0"]),
    (["data.batch_size=0"], ["data.batch_size", "0", "a positive integer"]),
    (["data.batch_size=2.5"], ["data.batch_size", "2.5", "a positive integer"]),
    (["data.batch_size=inf"], ["data.batch_size", "inf", "a positive integer"]),
    (["data.num_workers=-1"], ["data.num_workers", "-1", ">= 0"]),
    (["data.image_size=0"], ["data.image_size", "0", "[1, 1024]"]),
    (["data.val_size=-1"], ["data.val_size", "-1", "fraction"]),
    (["data.val_size=1.5"], ["data.val_size", "1.5", "fraction"]),
    (["data.val_size=nan"], ["data.val_size", "nan", "fraction"]),
    (["data.crop_padding=-1"], ["data.crop_padding", "-1", ">= 0"]),
    (["data.cutout_size=0"], ["data.cutout_size", "0", ">= 1"]),
    (["data=image_folder", "data.root=/nonexistent/images", "data.stats_samples=0"],
     ["data.stats_samples", "0", ">= 1"]),
    (["data.augment=sideways"], ["data.augment", "sideways", "standard"]),
    (["data.normalize=zscore"], ["data.normalize", "zscore", "standardize"]),
    (["data.pipeline=gpu"], ["data.pipeline", "gpu", "tensor"]),
    (["data.val_size=2000"], ["data.val_size", "2000"]),
    (["trainer.max_epochs=0"], ["trainer.max_epochs", "0", ">= 1"]),
    (["trainer.max_epochs=2.5"], ["trainer.max_epochs", "2.5", "an integer"]),
    (["trainer.devices=0"], ["trainer.devices", "0", ">= 1"]),
    (["trainer.devices=-2"], ["trainer.devices", "-2"]),
    (["trainer.accelerator=foo"], ["trainer.accelerator", "foo", "cpu"]),
    (["trainer.precision=8"], ["trainer.precision", "8", "32-true"]),
    (["trainer.gradient_clip_val=-1"], ["trainer.gradient_clip_val", "-1", ">= 0"]),
    (["trainer.gradient_clip_val=inf"], ["trainer.gradient_clip_val", "inf"]),
    (["trainer.limit_train_batches=1.5"], ["trainer.limit_train_batches", "1.5", "fraction"]),
    (["trainer.log_every_n_steps=0"], ["trainer.log_every_n_steps", "0", ">= 1"]),
    (["trainer.check_val_every_n_epoch=0"], ["trainer.check_val_every_n_epoch", "0", ">= 1"]),
    (["model.dropout=1.5"], ["model.dropout", "1.5", "[0, 1)"]),
    (["model.dropout=-0.1"], ["model.dropout", "-0.1", "[0, 1)"]),
    (["model.dropout=nan"], ["model.dropout", "nan", "[0, 1)"]),
    (["model.batchnorm=maybe"], ["model.batchnorm", "maybe", "true or false"]),
    (["model.activation=swoosh"], ["swoosh", "swish", "relu"]),
    (["model=resnet20", "model.stem=imagenet"], ["stem", "imagenet", "cifar"]),
    (["model=logreg", "activation=tanh"], ["activation", "tanh", "identity"]),
    (["loss.label_smoothing=1"], ["loss.label_smoothing", "1", "[0, 1)"]),
    (["loss.label_smoothing=inf"], ["loss.label_smoothing", "inf"]),
    (["loss.label_smoothing=-0.1"], ["loss.label_smoothing", "-0.1", "[0, 1)"]),  # torch trains with it silently
    (["loss=hinge", "loss.margin=0"], ["loss.margin", "0", "> 0"]),
    (["regularization=l2", "regularization.strength=-1"], ["regularization.strength", "-1", ">= 0"]),
    (["regularization=l2", "regularization.strength=inf"], ["regularization.strength", "inf"]),
    (["regularization=elastic_net", "regularization.l1_ratio=2"], ["regularization.l1_ratio", "2", "[0, 1]"]),
    (["seed=abc"], ["seed", "abc", "an integer"]),
    (["seed=1.5"], ["seed", "1.5", "an integer"]),
    (["test=maybe"], ["test", "maybe", "true or false"]),
    (["callbacks.last_checkpoint.every_n_train_steps=0"], ["every_n_train_steps", "0", ">= 1"]),
    (["callbacks=early_stopping", "callbacks.early_stopping.patience=-1"], ["patience", "-1", ">= 0"]),
    (["performance.matmul_precision=low"], ["performance.matmul_precision", "low", "highest"]),
    # the Trainer this machine cannot build
    (["trainer=gpu"], ["trainer.accelerator", "gpu", "no GPU" if not torch.cuda.is_available() else "gpu",
                       "trainer=cpu"]),
    (["trainer.accelerator=cuda"], ["trainer.accelerator", "cuda", "trainer=cpu"]),
    # data and files
    (["data=image_folder"], ["data.root is required"]),
    (["data=image_folder", "data.root=/nonexistent/images"], ["/nonexistent/images", "train/"]),
    (["data=cifar10", "data.download=false", "paths.data_dir=/nonexistent/data"], ["/nonexistent/data", "download"]),
    (["data=cifar10", "data.download=maybe"], ["data.download", "maybe", "true or false"]),
    (["resume=/nonexistent/run"], ["/nonexistent/run", "does not exist"]),
]
if torch.cuda.is_available():  # the two GPU cases are the CPU's: on a GPU machine they are valid
    TRAIN_CASES = [c for c in TRAIN_CASES if c[0] not in (["trainer=gpu"], ["trainer.accelerator=cuda"])]

EVALUATE_CASES = [
    (["model=resnet20"], ["model=resnet20", "from the checkpoint", "ckpt_path"]),
    (["optimizer=adam"], ["optimizer=adam", "from the checkpoint"]),
    (["model.dropout=0.1"], ["model.dropout", "from the checkpoint"]),
    (["foo=1"], ["foo", "valid keys", "ckpt_path"]),
    (["data.batch_sizee=3"], ["data.batch_sizee", "did you mean data.batch_size"]),
    (["data.batch_size=0"], ["data.batch_size", "0", "a positive integer"]),
    (["trainer.devices=0"], ["trainer.devices", "0", ">= 1"]),
    (["trainer.accelerator=foo"], ["trainer.accelerator", "foo"]),
]


@pytest.fixture(scope="module")
def earlier(tiny_run):
    run_dir, _ = tiny_run
    return run_dir, digest(run_dir)


@pytest.mark.parametrize("overrides,words", TRAIN_CASES, ids=[" ".join(o) for o, _ in TRAIN_CASES])
def test_train_battery(overrides, words, earlier, capsys):
    run_dir, before = earlier
    code, err = run_entry("train.py", ["experiment=smoke", *overrides, f"hydra.run.dir={run_dir}",
                                       f"paths.output_dir={run_dir}"], capsys)
    assert code == 2, err
    line = one_line(err)
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    assert digest(run_dir) == before


@pytest.mark.parametrize("overrides,words", EVALUATE_CASES, ids=[" ".join(o) for o, _ in EVALUATE_CASES])
def test_evaluate_battery(overrides, words, earlier, capsys, tmp_path):
    run_dir, before = earlier
    code, err = run_entry("evaluate.py", [f"ckpt_path={run_dir}", *overrides, f"hydra.run.dir={tmp_path}",
                                          f"paths.output_dir={tmp_path}"], capsys)
    assert code == 2, err
    line = one_line(err)
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    assert digest(run_dir) == before


def test_evaluate_without_a_checkpoint_and_with_a_missing_one(capsys, tmp_path):
    code, err = run_entry("evaluate.py", [], capsys)
    assert code == 2 and "ckpt_path or weights is required" in one_line(err)
    code, err = run_entry("evaluate.py", [f"ckpt_path={tmp_path / 'nope.ckpt'}"], capsys)
    assert code == 2 and "nope.ckpt" in one_line(err)


def test_the_battery_is_what_the_issue_asks_for():
    assert len(TRAIN_CASES) + len(EVALUATE_CASES) + 2 >= 60


def test_as_a_user_runs_it_a_bad_command_leaves_an_earlier_run_byte_identical(earlier):
    """The battery's path as a real process: exit status 2, one line, the earlier run untouched (trainer=gpu and
    data.root=/nope, once checked here too, are the battery's cases)."""
    run_dir, before = earlier
    result = run_script("train.py", "experiment=smoke", "optimizer.lrr=0.1", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    one_line(result.stderr)
    assert digest(run_dir) == before


# ---- bugs keep their tracebacks ---------------------------------------------------------------------

def test_a_valueerror_from_a_bug_in_model_code_keeps_its_traceback(monkeypatch, capsys, tmp_path):
    import models.lenet

    def broken(*args, **kwargs):
        return int("not a number")  # a slip in the model code: ValueError, raised by int(), not by a check

    monkeypatch.setattr(models.lenet.LeNet5, "__init__", broken)
    with pytest.raises(InstantiationException) as error:  # raised on, not turned into one line and exit 2
        run_entry("train.py", ["experiment=smoke", f"paths.output_dir={tmp_path}"], capsys)
    assert isinstance(error.value.__cause__, ValueError) and "not a number" in str(error.value.__cause__)
    assert "error:" not in capsys.readouterr().err


def test_a_bug_in_a_subprocess_prints_its_traceback(tmp_path):
    bug = tmp_path / "sitecustomize.py"  # loaded by the child: breaks LeNet-5's constructor with a ValueError
    bug.write_text("import models.lenet\n"
                   "def broken(self, *a, **k):\n    raise ValueError('a bug, not bad input')\n"
                   "models.lenet.LeNet5.__init__ = broken\n")
    import os
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=smoke",
                             f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and "Traceback" in result.stderr and "a bug, not bad input" in result.stderr


# ---- data checked where it is read, before fit -----------------------------------------------------

@pytest.mark.parametrize("pipeline", ["tensor", "torchvision"])
@pytest.mark.parametrize("damage,says", [
    ("truncated", "train/dog/0.jpg"),
    ("not an image", "train/cat/notes.jpg"),
    ("16-bit", "test/cat/deep.png"),
    ("missing test class", "'bird'"),
])
def test_a_bad_image_folder_fails_at_set_up_naming_the_file(tmp_path, capsys, pipeline, damage, says):
    root = image_folder(tmp_path / "images")
    if damage == "truncated":
        data = (root / "train" / "dog" / "0.jpg").read_bytes()
        (root / "train" / "dog" / "0.jpg").write_bytes(data[: len(data) // 2])
    elif damage == "not an image":
        (root / "train" / "cat" / "notes.jpg").write_text("not a picture")
    elif damage == "16-bit":
        Image.new("I;16", (12, 12), 4000).save(root / "test" / "cat" / "deep.png")
    else:
        (root / "train" / "bird").mkdir()
        Image.new("RGB", (12, 12)).save(root / "train" / "bird" / "0.jpg")
    code, err = run_entry("train.py", ["experiment=smoke", "data=image_folder", f"data.root={root}", "data.val_size=2",
                                       f"data.pipeline={pipeline}", "data.num_workers=0", "data.augment=crop",
                                       f"paths.output_dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path / 'data'}"],
                          capsys)
    assert code == 2
    line = one_line(err)
    assert says in line and ("expected" in line), line
    assert not (tmp_path / "run").exists()  # before fit, before the run dir is written to


def test_a_good_image_folder_sets_up(tmp_path):
    from datamodules import ImageFolderDataModule

    root = image_folder(tmp_path / "images")
    dm = ImageFolderDataModule(root=str(root), data_dir=str(tmp_path), val_size=2, batch_size=2, pipeline="torchvision")
    dm.setup("fit")
    assert len(dm.train_set) == 4 and len(dm.test_set) == 6


# ---- files read back, run dirs kept apart ----------------------------------------------------------

def test_compare_marks_a_run_with_a_truncated_metrics_json_and_tabulates_the_rest(tmp_path, capsys):
    import compare

    for i, name in enumerate(("a", "b", "c")):
        hydra = tmp_path / name / ".hydra"
        hydra.mkdir(parents=True)
        (hydra / "config.yaml").write_text(yaml.safe_dump({"task_name": "train", "seed": i,
                                                           "model": {"name": "lenet5"}}))
        (hydra / "overrides.yaml").write_text(yaml.safe_dump([f"seed={i}"]))
        (tmp_path / name / "metrics.json").write_text(json.dumps({"test/acc": 0.5 + i / 10, "status": "completed"}))
    (tmp_path / "b" / "metrics.json").write_text('{"test/acc": 0.6, "sta')  # killed while writing in place
    runs = {r["run"]: r for r in compare.compare(tmp_path, group=False)}
    assert runs["b"]["status"] == "unreadable" and "metrics.json" in runs["b"]["error"]
    assert runs["a"]["test_acc"] == 0.5 and runs["c"]["test_acc"] == 0.7
    assert "| seed=1 | lenet5 | 1 | unreadable: metrics.json" in (tmp_path / "comparison.md").read_text()


def test_two_runs_resolving_the_same_dir_name_get_two_dirs(tmp_path):
    from core.files import unique_dir

    name = str(tmp_path / "outputs" / "2026-01-01_00-00-00_lenet5_digits")
    assert unique_dir(name) == name and unique_dir(name) == name + "_2" and unique_dir(name) == name + "_3"


# slow: two train.py processes at once, about 13 s; default: unique_dir's numbering (above)
@pytest.mark.slow
def test_two_train_py_started_in_the_same_second_write_to_different_dirs(tmp_path):
    """Both name the same dir (as two runs of one second do); each gets its own."""
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(ROOT / "train.py"), "experiment=smoke", "trainer.max_epochs=1",
               "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "test=false", "logger=none",
               "trainer.enable_progress_bar=false", "hydra.run.dir=${unique_dir:outputs/same_second}"]
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    dirs = sorted(p.name for p in (tmp_path / "outputs").iterdir())
    assert dirs == ["same_second", "same_second_2"]
    assert all((tmp_path / "outputs" / d / "metrics.json").is_file() for d in dirs)
