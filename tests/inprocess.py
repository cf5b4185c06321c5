"""Running an entry point in this process, as ``python <script> <argv>`` would, without a subprocess.

``run_entry`` goes through the entry point's own command-line rewrite and checks (``entry_point``), then
does what ``@hydra.main`` does before the task function (compose with the hydra node, the run dir
created and set as Hydra's runtime output dir, the hydra node removed), then runs either the script's
``build`` (``stage="build"``: the set-up, where bad input fails) or its whole task function
(``stage="run"``). It returns (exit status, stderr): 0 when it went through."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict, read_write

from helpers import ROOT

CONFIG_DIR = ROOT / "configs"


def entry_options(name: str, module) -> dict:
    """The arguments each script's ``__main__`` hands to ``entry_point``."""
    if name == "train":
        return dict(config_name="train",
                    required=module.REQUIRED)
    if name == "evaluate":
        return dict(config_name="evaluate", hints=module.HINTS)
    return dict(config_name=name)


def run_entry(script: str, argv: list[str], capsys, stage: str = "build") -> tuple[int, str]:
    code, _, err = run_entry_output(script, argv, capsys, stage)
    return code, err


def run_entry_output(script: str, argv: list[str], capsys=None, stage: str = "run") -> tuple[int, str, str]:
    """``run_entry``, with what the command printed on stdout too: (exit status, stdout, stderr). Without
    ``capsys`` (a fixture wider than one test has none) what it prints is caught here instead."""
    if capsys is None:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code, _, _ = run_entry_output(script, argv, NO_CAPTURE, stage)
        return code, out.getvalue(), err.getvalue()
    import importlib

    from cli.commandline import entry_point

    name = script.removesuffix(".py")
    module = importlib.import_module(name)

    def main():
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(name, overrides=sys.argv[1:], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        run_dir = OmegaConf.select(cfg, "hydra.run.dir")  # resolved as Hydra resolves it (unique_dir creates it)
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.runtime.output_dir = str(Path(run_dir).absolute())
            cfg.hydra.job.name = name
        HydraConfig.instance().set_config(cfg)
        Path(run_dir).mkdir(parents=True, exist_ok=True)  # as Hydra's run_job does
        with open_dict(cfg):
            del cfg["hydra"]  # as @hydra.main hands it over
        if stage == "build" and hasattr(module, "build"):
            module.build(cfg)
        elif stage == "run":
            module.main.__wrapped__(cfg)

    for logger in (logging.getLogger("lightning.pytorch"), logging.getLogger("lightning.fabric")):
        for handler in logger.handlers:  # Lightning's own, bound at import to whatever stderr was then
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sys.stderr)
    root, handlers = logging.getLogger(), list(logging.getLogger().handlers)
    old, raising = sys.argv, logging.raiseExceptions
    sys.argv = [script, *argv]
    logging.raiseExceptions = False  # a handler bound to an earlier test's closed capture stream must stay quiet
    try:
        entry_point(CONFIG_DIR, main, **entry_options(name, module))()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv, logging.raiseExceptions = old, raising
        for handler in [h for h in root.handlers if h not in handlers]:  # the run's <task>.log
            root.removeHandler(handler)
            handler.close()
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None  # leave no composed config behind for other tests (Lightning reads it)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class NO_CAPTURE:  # noqa: N801  (capsys's one method, for a caller that catches the output itself)
    @staticmethod
    def readouterr():
        return SimpleNamespace(out="", err="")


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def digest(folder) -> dict:
    """Every file below ``folder`` (links too, by their own target text) -> its sha1."""
    found = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(folder))] = "link to " + str(path.readlink())
        elif path.is_file():
            found[str(path.relative_to(folder))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return found


def copy_run(source, target):
    """A copy of a run dir to change (links copied as links)."""
    shutil.copytree(source, target, symlinks=True)
    return target


class Canaries:
    """A file and a folder outside every run dir, which no command may change or remove."""

    def __init__(self, root) -> None:
        self.root = root
        self.file = root / "canary.txt"
        self.folder = root / "canary_dir"
        self.folder.mkdir(parents=True)
        self.file.write_text("a file outside the run\n")
        (self.folder / "inside.txt").write_text("a file in a folder outside the run\n")
        self.before = digest(root)

    def untouched(self) -> bool:
        return digest(self.root) == self.before
