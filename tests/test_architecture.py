"""The layout of ../shared/DESIGN.md, checked: what each room may import, importing a
library module changes nothing, and train.py checks its command line before torch."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("core", "models", "datamodules", "training", "analysis", "reporting", "cli")
# room -> (what its modules may import at the top, what they may import only inside a function);
# the standard library is allowed everywhere. From DESIGN.md's table of rooms.
RULES = {
    # the ground floor: the standard library; torch and matplotlib only inside the helper that needs them
    "core": ({"core"}, {"torch", "matplotlib"}),
    # torchvision: only to fetch its ImageNet weights when asked (models/weights.py)
    "models": ({"torch", "models"}, {"torchvision"}),
    # scikit-learn: only for its digits data set
    "datamodules": ({"torch", "torchvision", "lightning", "numpy", "PIL", "core", "datamodules"}, {"sklearn"}),
    # matplotlib: drawn lazily, never a backend switch
    "training": ({"torch", "lightning", "torchmetrics", "numpy", "core", "models", "training"}, {"matplotlib"}),
    "analysis": ({"torch", "core", "models", "analysis"}, set()),
    # hydra and omegaconf: a run dir is Hydra's record (.hydra/, its override grammar) and a run's records read
    # HydraConfig; tensorboard's protos where a run writes its HPARAMS session (reporting/records.py)
    "reporting": ({"torch", "lightning", "numpy", "yaml", "matplotlib", "tensorboard", "hydra", "omegaconf",
                   "core", "models", "datamodules", "training", "analysis", "reporting"}, set()),
    # torch and Lightning only once the command line is checked: `train.py --help` starts in a second
    "cli": ({"hydra", "omegaconf", "yaml", "core", "models", "datamodules", "training", "analysis", "reporting", "cli"},
            {"torch", "lightning"}),
}


def imports(source: str) -> list[tuple[str, int, bool]]:
    """(top-level package, line, inside a function) of every absolute import in ``source``."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name.split(".")[0], child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module != "__future__":
                found.append((child.module.split(".")[0], child.lineno, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(source), False)
    return found


def forbidden(room: str, source: str) -> list[str]:
    """The imports in ``source`` that ``room`` may not make, as ``line: package``."""
    top, lazy = RULES[room]
    return [f"{line}: {package}{' (at the top; allowed inside a function)' if package in lazy else ''}"
            for package, line, in_function in imports(source)
            if package not in sys.stdlib_module_names and package not in top and not (in_function and package in lazy)]


def test_the_import_check_finds_what_a_room_may_not_import():
    source = textwrap.dedent("""
        import torch
        from hydra.utils import instantiate
        import matplotlib.pyplot as plt

        def draw():
            import matplotlib
    """)
    assert forbidden("training", source) == ["3: hydra", "4: matplotlib (at the top; allowed inside a function)"]
    assert forbidden("models", "from lightning import Trainer\n") == ["1: lightning"]
    assert forbidden("cli", "import torch\n") == ["1: torch (at the top; allowed inside a function)"]
    assert forbidden("cli", "def f():\n    import torch\n") == []


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_imports_only_what_design_md_allows_it(room):
    bad = [f"{path.relative_to(ROOT)}:{line}" for path in sorted((ROOT / room).rglob("*.py"))
           for line in forbidden(room, path.read_text())]
    assert not bad, f"{room}/ may import {sorted(RULES[room][0])} (and {sorted(RULES[room][1])} lazily); found: {bad}"


def library_modules() -> list[str]:
    return [".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for room in ROOMS for path in sorted((ROOT / room).rglob("*.py"))]


def test_importing_any_library_module_leaves_matplotlib_and_omegaconf_as_they_were():
    """A notebook user's backend and resolvers stay theirs: no matplotlib.use, no resolver registered.
    (pyplot itself gets imported: torchmetrics imports it; importing it switches nothing.)"""
    script = textwrap.dedent(f"""
        import importlib, sys
        import matplotlib
        matplotlib.use("pdf")  # a backend none of our code would choose
        from omegaconf import OmegaConf
        from omegaconf.basecontainer import BaseContainer
        before = set(BaseContainer._resolvers)
        for name in {library_modules()!r}:
            importlib.import_module(name)
        print("backend", matplotlib.get_backend())
        print("new resolvers", sorted(set(BaseContainer._resolvers) - before))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["backend pdf", "new resolvers []"], result.stdout


PROBE = """
import os, runpy, sys
sys.path.insert(0, os.getcwd())
sys.argv = [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    print("exit", exit.code, file=sys.stderr)
print("imported", [name for name in ("torch", "lightning") if name in sys.modules], file=sys.stderr)
"""


@pytest.mark.parametrize("argv, status, says", [
    (["--help"], 0, "== Configuration groups =="),
    (["model=nope"], 2, "error: model='nope' is not a model option"),
    # a key no class of ours receives (cli/validation.py): answered before torch is imported
    (["trainer.max_epochs=0"], 2, "error: trainer.max_epochs=0 is not valid"),
    (["trainer.max_epoch=3"], 2, "error: trainer.max_epoch=3: trainer has no key 'max_epoch'"),
    (["--cfg", "job"], None, "model:"),
])
def test_train_answers_help_and_bad_input_without_importing_torch_or_lightning(argv, status, says):
    result = subprocess.run([sys.executable, "-c", PROBE, "train.py", *argv], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "imported []", result.stderr[-3000:]
    assert (f"exit {status}" in lines) if status is not None else not any(line.startswith("exit") for line in lines)
    assert says in result.stdout + result.stderr


def test_shell_completion_answers_without_importing_torch():
    result = subprocess.run([sys.executable, "-c", PROBE, "train.py", "-sc", "query=bash"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "COMP_LINE": "python train.py model=resnet1"})
    assert "model=resnet18" in result.stdout.split(), result.stdout + result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == "imported []", result.stderr[-3000:]


def rooms_the_config_reaches(run) -> list[tuple[str, list[str]]]:
    """The rooms whose functions receive the composed config (or a node of it), in the order ``run()`` reaches
    them: (room, [file:function, ...]) with consecutive calls into one room merged. Parts built from the config
    (a model, a data module) receive plain values from Hydra's ``instantiate``: they do not count."""
    from omegaconf import DictConfig

    rooms, path = {}, []

    def room_of(filename: str) -> str | None:
        if filename not in rooms:
            path = Path(filename).resolve()
            part = path.relative_to(ROOT).parts[0] if path.is_relative_to(ROOT) else None
            rooms[filename] = part if part in ROOMS else None
        return rooms[filename]

    def holds_the_config(frame) -> bool:
        for value in frame.f_locals.values():
            if isinstance(value, DictConfig):
                while value._get_parent() is not None:
                    value = value._get_parent()
                if {"model", "data", "trainer"} <= set(value.keys()):
                    return True
        return False

    def profile(frame, event, arg):
        room = room_of(frame.f_code.co_filename) if event == "call" else None
        if room and holds_the_config(frame):
            where = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"
            if not path or path[-1][0] != room:
                path.append((room, []))
            path[-1][1].append(where)

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return path


def test_the_config_enters_each_room_once_on_its_way_from_train_py_to_its_uses(tmp_path, capsys):
    """The config's path (issue 23): train.py hands it to cli/ (checks, then the parts built through Hydra) and
    then to reporting/ (a checkpoint to start from, the run's records), and to no other room: a model, a data
    module, the LightningModule and the Trainer receive plain values. A resumed run enters reporting/ first too,
    to compose the stored run's config again (README "Layout")."""
    from inprocess import run_entry

    argv = ["experiment=smoke", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}"]
    outcome = {}
    path = rooms_the_config_reaches(lambda: outcome.update(run=run_entry("train.py", argv, capsys, stage="run")))
    assert outcome["run"][0] == 0, outcome["run"][1][-3000:]
    assert [room for room, _ in path] == ["cli", "reporting"], path
    assert "commandline.py:instantiate_trainer" in path[0][1] and "records.py:write_metrics" in path[1][1], path
