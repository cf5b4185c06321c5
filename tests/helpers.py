"""Test helpers: running the entry points as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def run_script(script: str, *overrides: str, cwd: Path | None = None, timeout: int = 600,
               flags: tuple[str, ...] = (), env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python <flags> <script> <overrides>`` in a subprocess, with ``env`` added to the environment; output
    captured as text."""
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or "2", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, *flags, str(ROOT / script), *overrides],
        cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def final_metrics(stdout: str) -> dict:
    """The metrics.json of the run dir that train.py / evaluate.py name on their last 'run dir:' line
    (what they print is a rounded table; the file keeps every metric unrounded)."""
    import json

    lines = [line for line in stdout.splitlines() if line.startswith("run dir: ")]
    assert lines, f"no 'run dir:' line in output:\n{stdout[-2000:]}"
    path = Path(lines[-1][len("run dir: "):])
    return json.loads((path if path.is_absolute() else ROOT / path).joinpath("metrics.json").read_text())
