"""Files the plugin keeps under <root>/var/lib/dnf/libvirt-units/.

Written atomically (temp file in the same directory, fsync, rename, fsync of the directory) so a
crash leaves the old file or the new one, never half of one. Symlinked paths are refused: the
directory is root-only and a link there is an attack or a mistake.

Every transaction writes two or three of these files, so the path work is plain os calls on
strings (pathlib costs ~50,000 instructions per component checked) and the temp file is made
here, not by tempfile.mkstemp (whose random names come from a pure-Python generator).
"""

from __future__ import annotations

import json
import os
import stat

from .gate import PENDING, STATE_DIR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .host import Root

__all__ = ["FORMAT_VERSION", "LAST_TRANSACTION", "PENDING", "STATE_DIR", "encode", "read_json", "state_dir",
           "write_encoded", "write_json"]

LAST_TRANSACTION = "last-transaction.json"
FORMAT_VERSION = 1
_PARTS = tuple(STATE_DIR.split("/"))
# compact with sorted keys, what the files hold: json's C encoder serves it (not an indented one)
_ENCODER = json.JSONEncoder(sort_keys=True)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def state_dir(root: Root) -> str:
    return os.path.join(root, STATE_DIR)


def encode(value: Any) -> str:
    """`value` as JSON text the way the files hold it (compact, keys sorted)."""
    return _ENCODER.encode(value)


def _refuse_symlinks(root: Root, name: str) -> tuple[str, bool]:
    """The state directory's path, and whether it exists; OSError when the directory, one of
    its parents below `root`, or the file `name` in it is a symlink."""
    path = os.fspath(root).rstrip("/")  # "/" -> "": the paths below it are "/var", ...
    directory = f"{path}/{STATE_DIR}"
    for part in (*_PARTS, name):
        path = f"{path}/{part}"
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):  # and nothing below it exists either
            return directory, part == name
        if stat.S_ISLNK(mode):
            raise OSError(f"{path} is a symlink; refusing to read or write state through it")
    return directory, True


def write_json(root: Root, name: str, data: Any, indent: int | None = 2, durable: bool = True) -> None:
    """Write `data` (plus the format version) atomically. indent=None for files only programs
    read: json's C encoder only serves unindented output, ~10x faster for a big transaction.
    durable=False skips the two fsyncs (~10 ms on a disk): the rename is still atomic, and a
    power cut may bring back the previous version, which is all some files need."""
    data = {"version": FORMAT_VERSION, **data}
    text = encode(data) if indent is None else json.dumps(data, indent=indent, sort_keys=True)
    _write(root, name, text, durable)


def write_encoded(root: Root, name: str, members: dict[str, str], durable: bool = True) -> None:
    """write_json(indent=None) of the object whose members are given already encoded (encode()
    of each value): the same bytes, and a file rewritten often re-encodes only what changed."""
    members = {"version": encode(FORMAT_VERSION), **members}
    _write(root, name, "{" + ", ".join(f"{encode(key)}: {members[key]}" for key in sorted(members)) + "}", durable)


def _write(root: Root, name: str, text: str, durable: bool) -> None:
    directory, exists = _refuse_symlinks(root, name)
    if not exists:
        os.makedirs(directory, mode=0o700, exist_ok=True)  # the parents as mkdir -p makes them
    tmp, fd = _create_temp(directory, name)
    try:
        try:
            content = memoryview(f"{text}\n".encode())
            while content:
                content = content[os.write(fd, content):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, f"{directory}/{name}")
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _create_temp(directory: str, name: str) -> tuple[str, int]:
    """A new file `.NAME.RANDOM` in `directory` (mode 0600, as mkstemp makes it) and its fd."""
    for _ in range(100):
        tmp = f"{directory}/.{name}.{os.urandom(6).hex()}"
        try:
            return tmp, os.open(tmp, _CREATE, 0o600)
        except FileExistsError:  # 48 random bits: never, in practice
            continue
    raise FileExistsError(f"no unused temporary name for {name} in {directory}")


def read_json(root: Root, name: str) -> dict[str, Any] | None:
    """The file's data; None if absent; OSError for a symlink or a non-regular file (a FIFO
    would hang us); ValueError for anything that is not our JSON."""
    directory, _ = _refuse_symlinks(root, name)
    path = f"{directory}/{name}"
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
