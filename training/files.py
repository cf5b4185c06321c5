"""Atomic writes: a temporary file in the same folder, then a rename, so a reader
(compare.py, a resume) never meets a half-written file, even after a kill. No
dependencies, so that every entry point can use it."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (no half-written file)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    partial.replace(path)


def write_json(path: Path, value) -> None:
    """Write JSON atomically."""
    write_text(path, json.dumps(value, indent=2))
