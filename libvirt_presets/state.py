"""Files the plugin keeps under <root>/var/lib/dnf/libvirt-units/.

Written atomically (temp file in the same directory, fsync, rename, fsync of the directory) so a
crash leaves the old file or the new one, never half of one. Symlinked paths are refused: the
directory is root-only and a link there is an attack or a mistake.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

from .gate import PENDING, STATE_DIR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FORMAT_VERSION", "LAST_TRANSACTION", "PENDING", "STATE_DIR", "read_json", "state_dir", "write_json"]

LAST_TRANSACTION = "last-transaction.json"
FORMAT_VERSION = 1


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def _refuse_symlinks(root: Path, path: Path) -> None:
    current = path
    while current != root and current != current.parent:
        if current.is_symlink():
            raise OSError(f"{current} is a symlink; refusing to read or write state through it")
        current = current.parent


def write_json(root: Path, name: str, data: Any, indent: int | None = 2, durable: bool = True) -> Path:
    """Write `data` (plus the format version) atomically. indent=None for files only programs
    read: json's C encoder only serves unindented output, ~10x faster for a big transaction.
    durable=False skips the two fsyncs (~10 ms on a disk): the rename is still atomic, and a
    power cut may bring back the previous version, which is all some files need."""
    directory = state_dir(root)
    _refuse_symlinks(root, directory / name)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"version": FORMAT_VERSION, **data}, indent=indent, sort_keys=True))
            handle.write("\n")
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if not durable:
        return directory / name
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return directory / name


def read_json(root: Path, name: str) -> dict[str, Any] | None:
    """The file's data; None if absent; OSError for a symlink or a non-regular file (a FIFO
    would hang us); ValueError for anything that is not our JSON."""
    path = state_dir(root) / name
    _refuse_symlinks(root, path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file; refusing to read it")
        raw = handle.read()
    try:
        data: object = json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    except RecursionError as exc:  # "[[[[...": nested deeper than the parser goes
        raise ValueError(f"{path}: not valid JSON: nested too deeply") from exc
    version = data.get("version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION or not isinstance(data, dict):  # the second for the type checker
        raise ValueError(f"{path}: unknown format version {version!r}")
    return data
