"""Writing files safely; the standard library only, so every room and entry point can use it.

- ``atomic_write``: a temporary file created exclusively in the destination's own folder (so the
  final rename never crosses file systems, whatever ``TMPDIR`` is), written, flushed and fsync'ed,
  then renamed over the destination and the folder fsync'ed. A reader, a resume or a kill never
  meets half a file under a final name: a partial file is ``.<name>.<random>.partial``.
- A write that fails (a full disk, a read-only file system, no permission) raises ``WriteError``:
  one line naming the file and, for a full disk, the free space left; the temporary file is
  removed and the file it would have replaced is untouched.
- No write follows a symbolic link: ``refuse_link`` (the file, and every folder between it and the
  run or sweep dir) and ``links_inside`` (a whole run dir) name the link and refuse.
- ``safe_name``: a name read from a file (a stored model name) made into one plain folder-name part.
- ``hold_run_dir``: one process per run dir, through an exclusive lock on ``<run dir>/.lock``.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import UserError

FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class WriteError(UserError):
    """A file could not be written (full disk, read-only file system, permission): one line."""


class DiskFull(WriteError):
    """No space left on the device (or over quota) while writing a file."""


class LinkRefused(UserError):
    """A write would have gone through a symbolic link."""


def free_space(folder: Path) -> str:
    """The free space of ``folder``'s file system, for a message ("12.0 KiB free")."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "free space unknown"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} {unit} free" if unit == "bytes" else f"{free:.1f} {unit} free"
        free /= 1024
    raise AssertionError("unreachable")


def os_error_of(error: BaseException) -> OSError | None:
    """The OSError behind ``error`` (torch.save wraps a failed write in a RuntimeError)."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        if "No space left on device" in str(seen):
            return OSError(errno.ENOSPC, "No space left on device")
        seen = seen.__cause__ or seen.__context__
    return None


def write_error(path: Path, error: OSError) -> WriteError:
    if error.errno in FULL:
        return DiskFull(f"no space left on the device writing {path} ({free_space(path.parent)}); "
                        "nothing was replaced: free some space, then run it again")
    reason = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
              errno.EPERM: "permission denied"}.get(error.errno, error.strerror or str(error))
    return WriteError(f"cannot write {path}: {reason}")


def refuse_link(path: Path, root: Path | None = None) -> None:
    """``LinkRefused`` when ``path`` or a folder between it and ``root`` (its parent when ``root`` is
    not one of its folders) is a symbolic link. ``root`` itself may be one (an ``outputs`` link to a
    larger disk is the user's choice)."""
    path = Path(os.path.abspath(path))
    stop = Path(os.path.abspath(root)) if root is not None else path.parent
    if stop not in path.parents:
        stop = path.parent
    for part in (path, *path.parents):
        if part == stop:
            return
        if part.is_symlink():
            raise LinkRefused(f"refused to write {path}: {part} is a symbolic link (to {os.readlink(part)}); "
                              "nothing in a run dir is written through a link: remove it")


def links_inside(folder: Path, limit: int = 3) -> list[Path]:
    """Symbolic links anywhere inside ``folder`` (not followed), the first ``limit``."""
    found: list[Path] = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        found += [Path(top) / name for name in sorted(dirs + files) if os.path.islink(os.path.join(top, name))]
        if len(found) >= limit:
            break
    return found[:limit]


def refuse_links_inside(folder: Path) -> None:
    links = links_inside(folder)
    if links:
        raise LinkRefused(f"refused to write into {folder}: {links[0]} is a symbolic link (to "
                          f"{os.readlink(links[0])}); nothing in a run dir is written through a link: remove it")


def _mode() -> int:
    """The permissions an ordinary new file gets here (0o666 less the umask), not mkstemp's 0o600."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not sync folders; the rename itself is still atomic
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], None], root: Path | None = None) -> Path:
    """``write(handle)`` into a temporary file beside ``path``, then rename it to ``path`` (see the
    module docstring). ``root``: the run or sweep dir, below which no folder may be a link."""
    path = Path(path)
    refuse_link(path, root)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as error:
        raise write_error(path, error) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, _mode())
        os.replace(temp, path)
    except BaseException as error:
        try:
            os.unlink(temp)
        except OSError:
            pass
        cause = os_error_of(error) if isinstance(error, Exception) else None
        if cause is not None:
            raise write_error(path, cause) from None
        raise
    fsync_dir(path.parent)
    return path


def write_bytes(path: Path, data: bytes, root: Path | None = None) -> Path:
    return atomic_write(path, lambda handle: handle.write(data), root)


def write_text(path: Path, text: str, root: Path | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (no half-written file), never through a link."""
    return write_bytes(path, text.encode(), root)


def write_json(path: Path, value, root: Path | None = None) -> Path:
    """Write JSON atomically."""
    return write_text(path, json.dumps(value, indent=2), root)


def save_figure(figure, path: Path, root: Path | None = None, **options) -> Path:
    """A matplotlib figure written atomically, in the format its suffix names (``.png``)."""
    path = Path(path)
    return atomic_write(path, lambda handle: figure.savefig(handle, format=path.suffix.lstrip(".") or "png", **options),
                        root)


def safe_name(text: object, fallback: str = "model", limit: int = 100) -> str:
    """``text`` as one plain name part: letters, digits and ``-_.`` only (anything else becomes ``_``),
    never empty, ``.`` or ``..``, at most ``limit`` characters."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(text))[:limit].lstrip(".")
    return name or fallback


_held: dict[str, int] = {}  # the run dir this process holds -> its lock's file descriptor


def hold_run_dir(folder: Path) -> None:
    """An exclusive lock on ``<folder>/.lock``, held until this process ends or holds another run dir
    (a sweep's runs, one after the other in one process): a second process that asks for the same
    run dir gets one line. Where ``fcntl`` does not exist (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:
        return
    folder = Path(folder)
    key = os.path.realpath(folder)
    if key in _held:
        return
    path = folder / ".lock"
    refuse_link(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), _mode())
    except OSError as error:
        raise write_error(path, error) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        raise UserError(f"{folder} is in use by another run (process {holder or '?'} holds {path}); "
                        "one run per run dir: give another hydra.run.dir, or wait for it to end") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    for other in list(_held):  # this process's earlier run is over
        os.close(_held.pop(other))
    _held[key] = fd


def run_dirname(overrides: str, max_bytes: int = 200) -> str:
    """A sweep run's folder name: its overrides (Hydra's ``override_dirname``),
    made safe to be one folder. A ``/`` in a value (``data.root=../images``)
    would nest folders, or with ``..`` put the run outside its sweep dir, so
    it becomes ``_``; a name longer than ``max_bytes`` (file systems allow 255)
    is cut and given a hash of the whole, so that runs stay apart."""
    name = overrides.replace("/", "_").replace("\\", "_") or "run"
    if len(name.encode()) > max_bytes:
        digest = hashlib.sha1(overrides.encode()).hexdigest()[:10]
        name = name.encode()[:max_bytes - 11].decode(errors="ignore") + "-" + digest
    return name


CREATED: list[tuple[Path, Path]] = []  # (run dir, the topmost folder made for it) this process created: unique_dir


def unique_dir(path: str) -> str:
    """``path``, created now and so this process's alone; if another process created it
    first (two runs started in the same second), ``path_2``, ``path_3``, ...: creation is
    exclusive, so two runs never share a dir. Cached in the config by OmegaConf
    (``use_cache``), so every later read of the run or sweep dir gives the same answer.
    Recorded in ``CREATED``: a command that fails its checks or only prints leaves it empty, and
    the entry point removes it again (``remove_empty_run_dirs``)."""
    for n in itertools.count(1):
        candidate = Path(path if n == 1 else f"{path}_{n}")
        made = [folder for folder in (candidate, *candidate.parents) if not folder.exists()]
        try:
            candidate.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            if candidate.is_dir() or not candidate.parent.is_dir():
                continue
            raise UserError(f"cannot create the run dir {candidate}: a file of that name is in the way") from None
        except OSError as error:  # a read-only file system, no permission
            raise UserError(f"cannot create the run dir {candidate}: {error.strerror}; "
                            "run from a writable folder or give hydra.run.dir=<a writable folder>") from None
        CREATED.append((candidate, made[-1] if made else candidate))
        return str(candidate)
    raise AssertionError("unreachable")


def remove_empty_run_dirs() -> None:
    """The run dirs ``unique_dir`` created that are still empty (the command failed its checks, or only
    printed), and the folders made for them (``outputs/``) if empty too: a failed command leaves nothing."""
    while CREATED:
        folder, top = CREATED.pop()
        for candidate in (folder, *folder.parents):
            try:
                candidate.rmdir()  # only ever an empty folder
            except OSError:
                break
            if candidate == top:
                break


def log_to_file(output_dir: str | Path, name: str) -> None:
    """Log into ``<run dir>/<name>.log`` from now on, as Hydra's file handler would have from the start
    (hydra/default.yaml leaves it out until the run is valid); once per process."""
    path = Path(output_dir) / f"{name}.log"
    root = logging.getLogger()
    if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve() for h in root.handlers):
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root.addHandler(handler)
