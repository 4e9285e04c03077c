"""Files the plugin keeps under <root>/var/lib/dnf/libvirt-units/.

Written atomically (temp file in the same directory, fsync, rename, fsync of the directory) so a
crash leaves the old file or the new one, never half of one. Symlinked paths are refused: the
directory is root-only and a link there is an attack or a mistake.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

STATE_DIR = "var/lib/dnf/libvirt-units"
LAST_TRANSACTION = "last-transaction.json"
FORMAT_VERSION = 1


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def _refuse_symlinks(root: Path, path: Path) -> None:
    current = path
    while current != root and current != current.parent:
        if current.is_symlink():
            raise OSError(f"{current} is a symlink; refusing to write state through it")
        current = current.parent


def write_json(root: Path, name: str, data: Any) -> Path:
    directory = state_dir(root)
    _refuse_symlinks(root, directory / name)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"version": FORMAT_VERSION, **data}, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return directory / name


def read_json(root: Path, name: str) -> dict[str, Any] | None:
    path = state_dir(root) / name
    _refuse_symlinks(root, path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    version = data.get("version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: unknown format version {version!r}")
    return data
