"""The tree is clean under the linter: ``python -m ruff check .`` from the repository root, with the rules
and the line length of pyproject.toml's [tool.ruff] (ruff is pinned in requirements.txt)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, ("python -m ruff check . (fix these, or say why not in pyproject.toml):\n"
                                    + result.stdout + result.stderr)
