"""One lent GPU window: every GPU measurement the README asks for, in one command, into one folder.

    python gpu_window.py data_root=/tmp/cifar10-jpeg out=/tmp/window             # one H100 or H200: about 9 minutes
    python gpu_window.py window=dry_run device=cpu data_root=<images> out=<dir>   # every part, tiny, on a CPU

In order (reporting/window.py): the image folder decoded once and written in airbench's layout; benchmark.py's
Lightning step against the bare step at batch 512 and its packing of k = 1, 2, 4, 8 runs on one GPU; the peer,
airbench94, on the same images and GPU; train.py experiment=speedrun with the peer's accuracy as its target;
the zoo (every family, 3 seeds, a few stated epochs) k runs at once, with the gpu tests beside it, stopped where
it would overrun ``budget_s``; compare.py on it. ``out`` ends up holding each part's own output (benchmark/,
peer/, speedrun/, zoo/ with compare.py's table and figures), logs/<part>.log, and the report: window.md and
window.json, written again after every part, so a window cut short still leaves what it measured.

Exit status 0 when every part completed or was skipped with a reason (a CPU has no peer and no gpu tests),
1 when one failed or ran out of time (window.md says which and why), 2 for bad input, before anything runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from cli.commandline import entry_point
from cli.validation import check_run
from core.errors import UserError, fail, user_errors_as_lines

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEVICES = ("cuda", "cpu")
REQUIRED = {"data_root": "data_root=<an image folder: the CIFAR-10 JPEG copy>"}


def check(cfg: DictConfig) -> None:
    """The settings no part checks before it runs, checked before Hydra creates ``out``."""
    if cfg.device not in DEVICES:
        raise UserError(f"device={cfg.device!r} is not valid; valid: {', '.join(DEVICES)}")
    root = Path(cfg.data_root)
    if not ((root / "train").is_dir() and (root / "test").is_dir()):
        raise UserError(f"data_root={cfg.data_root!r} has no train/ and test/ folders; expected an image folder "
                        "(<root>/train/<class>/*, <root>/test/<class>/*), such as the CIFAR-10 JPEG copy")
    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"out={cfg.out!r} exists and is not an empty folder; give a new one (a window writes "
                        "every part there)")
    for key in ("budget_s", "reserve_s"):
        if not isinstance(cfg[key], (int, float)) or isinstance(cfg[key], bool) or cfg[key] < 0:
            raise UserError(f"{key}={cfg[key]!r} must be a number of seconds >= 0")
    if cfg.device == "cuda":
        import torch  # only here: --help and typos answer before torch is imported

        if not torch.cuda.is_available():
            raise UserError("device=cuda: no CUDA device is visible here; valid here: cpu (window=dry_run "
                            "device=cpu, the dry run)")
    target = cfg.speedrun.target
    if target not in ("peer_tta", "peer") and not (isinstance(target, float) and 0 < target <= 1):
        raise UserError(f"speedrun.target={target!r} is not valid; valid: peer_tta, peer, or an accuracy in (0, 1]")
    k = cfg.zoo.runs_per_gpu
    if k != "auto" and not (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise UserError(f"zoo.runs_per_gpu={k!r} is not valid; valid: auto or a positive integer")


@hydra.main(version_base="1.3", config_path="configs", config_name="gpu_window")
@user_errors_as_lines  # bad input anywhere in the task: one line, exit 2 (Hydra would add a line of its own)
def main(cfg: DictConfig) -> int:
    from reporting.window import Window

    check_run(cfg, REQUIRED, check=check)
    out = Path(cfg.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python gpu_window.py", *sys.argv[1:]])
    report = Window(OmegaConf.to_container(cfg, resolve=True), out, command).run()
    print((out / "window.md").read_text())
    print(f"written: {out / 'window.md'}, {out / 'window.json'}")
    unfinished = [name for name, part in report["parts"].items() if part["status"] not in ("completed", "skipped")]
    if unfinished:
        fail(f"the window's parts {', '.join(unfinished)} did not complete: see {out / 'window.md'}", status=1)
    return 0


if __name__ == "__main__":
    entry_point(CONFIG_DIR, main, config_name="gpu_window")()
