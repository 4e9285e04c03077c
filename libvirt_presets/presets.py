"""What `systemctl preset` will do to a unit, predicted from the preset files of a root.

This mirrors systemd's src/shared/install.c (read_presets, query_presets,
pattern_match_multiple_instances) so the plugin can explain a preset before it runs it, with
the rules of the systemd version that will run the preset (`systemd_version`):

- 252 and 253 (RHEL 9, Debian 12): as described below.
- 254 and later: the `ignore PATTERN` verb; a unit it matches first is left as it is
  (decision "ignore", the rule says why). Before 254 it is a bad line.
- 255 and later (RHEL 10, Fedora): split-usr support is gone, so /lib/systemd/system-preset is
  no longer read on a root whose /lib is not a link to /usr/lib.

Differences from intuition that we reproduce on purpose, all checked against systemctl 252, 257
and 262 (tests/e2e/test_preset_differential.py, on each test stack):

- No matching rule, and no preset files at all, both mean *enable*.
- Bad lines are skipped one at a time, the rest of the file still counts.
- A bare `enable` line makes systemctl dereference a NULL pattern (252, 257 and 262 alike):
  every unit that reaches that line crashes the whole `systemctl preset` call, so nothing
  changes (decision "ignore"). A bare `disable` or `ignore` line matches nothing.
- Globs are glibc fnmatch(3) with only FNM_NOESCAPE: `*` and `?` also match `@` and `.`,
  `\\` is literal, `[^...]` negates like `[!...]`.
- `enable foo@.service a b` covers `foo@.service` (enabling foo@a and foo@b instead of the
  template's DefaultInstance=) and the instances foo@a/foo@b, nothing else; plain
  `enable foo@.service` covers the template only, never its instances.
"""

from __future__ import annotations

import errno
import functools
import mmap
import os
import re
import stat
from pathlib import Path

from .glibc_fnmatch import glob_match
from .records import Record
from .snapshot import resolve_in_root
from .systemctl import default_binary
from .units import SYSTEM, UNIT_TYPES, USER

_set = object.__setattr__

# The directories systemd reads, highest priority first (CONF_PATHS / CONF_PATHS_USR in
# src/basic/def.h). Builds with split-usr (Debian 12 and older) also read /lib for the system
# scope, never for the user scope.
PRESET_DIRS = {
    SYSTEM: (
        "/etc/systemd/system-preset",
        "/run/systemd/system-preset",
        "/usr/local/lib/systemd/system-preset",
        "/usr/lib/systemd/system-preset",
    ),
    USER: (
        "/etc/systemd/user-preset",
        "/run/systemd/user-preset",
        "/usr/local/lib/systemd/user-preset",
        "/usr/lib/systemd/user-preset",
    ),
}
SPLIT_USR_DIR = "/lib/systemd/system-preset"

# The rules of systemd 252 are the oldest we model; unknown versions get the newest rules we know.
OLDEST_SYSTEMD = 252
IGNORE_VERB_SINCE = 254
SPLIT_USR_DROPPED_IN = 255
NEWEST_KNOWN_SYSTEMD = 262
# Where a root's systemctl says which systemd it belongs to: the shared library it links
# (Debian >= 253, Fedora: libsystemd-shared-257.so, libsystemd-shared-257.3-1.fc42.so), or the
# `systemctl --version` banner compiled into it (Debian 12 links that code statically).
_VERSION_IN_BINARY = ((b"libsystemd-shared-", rb"libsystemd-shared-(\d{3,4})"), (b"systemd ", rb"systemd (\d{3,4}) \("))
_SYSTEMCTL_IN_ROOT = ("/usr/bin/systemctl", "/bin/systemctl")

ENABLE = "enable"
DISABLE = "disable"
IGNORE = "ignore"

NO_RULE_REASON = "no preset rule matches: systemd's default is enable"
BARE_ENABLE = ("`enable` without a unit name: systemctl crashes (SIGSEGV) on any unit that reaches "
               "this line, and the whole `systemctl preset` call changes nothing")
BAD_LINE = "couldn't parse {line}; systemd ignores this line"
IGNORE_VERB = "`ignore` needs systemd 254; systemd {version} cannot parse {line} and ignores this line"
NOT_A_TEMPLATE = "instance names after {name!r}, which is not a template; systemd ignores this line"
REFUSED = "{path}: {why}: `systemctl preset` fails and changes nothing"

# read_line() refuses lines this long (LONG_LINE_MAX), and read_presets() then fails outright.
LONG_LINE_MAX = 1024 * 1024
UNIT_NAME_MAX = 256
_WHITESPACE = " \t\n\r"  # systemd's WHITESPACE; Python's str.split() knows many more
_VALID_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:-_.\\@")
_LINE = re.compile(r"([^\n\r\0]*)(\n\r?\0?|\r\n?\0?|\0)?")


class PresetRule(Record):
    """One `enable`/`disable`/`ignore` line, and where it is, so a decision can point at it."""

    __slots__ = ("action", "pattern", "instances", "path", "line")
    action: str
    pattern: str
    instances: tuple[str, ...]
    path: str
    line: int

    def __init__(self, action: str, pattern: str, instances: tuple[str, ...], path: str, line: int) -> None:
        _set(self, "action", action)
        _set(self, "pattern", pattern)
        _set(self, "instances", instances)
        _set(self, "path", path)
        _set(self, "line", line)

    def __str__(self) -> str:
        words = " ".join((self.action, self.pattern, *self.instances)).rstrip()
        return f"`{words}` in {self.path}:{self.line}"


class PresetDecision(Record):
    """What `systemctl preset UNIT` does, and the rule that says so.

    `instances` are the instance units enabled in place of a template; empty means the unit
    itself (for a template: its DefaultInstance=, if it has one). "ignore" means systemctl
    changes nothing: either an `ignore` rule says so, or `problem` says why it fails.
    """

    __slots__ = ("unit", "action", "rule", "instances", "problem")
    unit: str
    action: str
    rule: PresetRule | None
    instances: tuple[str, ...]
    problem: str

    def __init__(self, unit: str, action: str, rule: PresetRule | None, instances: tuple[str, ...] = (),
                 problem: str = "") -> None:
        _set(self, "unit", unit)
        _set(self, "action", action)
        _set(self, "rule", rule)
        _set(self, "instances", instances)
        _set(self, "problem", problem)

    @property
    def reason(self) -> str:
        if self.problem:
            return self.problem
        return str(self.rule) if self.rule else NO_RULE_REASON


class PresetSet(Record):
    """All rules of one scope in the order systemd tries them; the first match wins.

    `fatal` is set when systemctl would refuse every preset of this scope (it cannot read a
    preset file); `problems` also lists the lines it skips.
    """

    __slots__ = ("rules", "problems", "fatal", "systemd_version")
    rules: tuple[PresetRule, ...]
    problems: tuple[str, ...]
    fatal: str
    systemd_version: int  # whose rules these are

    def __init__(self, rules: tuple[PresetRule, ...], problems: tuple[str, ...], fatal: str = "",
                 systemd_version: int = OLDEST_SYSTEMD) -> None:
        _set(self, "rules", rules)
        _set(self, "problems", problems)
        _set(self, "fatal", fatal)
        _set(self, "systemd_version", systemd_version)

    def decide(self, unit_name: str) -> PresetDecision:
        """The first rule that matches decides; ValueError for a name systemd refuses too."""
        if not _is_unit_name(unit_name):
            raise ValueError(f"not a unit name: {unit_name!r}")  # systemd: EINVAL
        if self.fatal:
            return PresetDecision(unit_name, IGNORE, None, problem=self.fatal)
        for rule in self.rules:
            if rule.action == ENABLE and not rule.pattern:
                return PresetDecision(unit_name, IGNORE, rule, problem=f"{rule}: {BARE_ENABLE}")
            instances = _instances_matched(rule, unit_name)
            if instances is None and not glob_match(rule.pattern, unit_name):
                continue
            if rule.action == ENABLE:
                return PresetDecision(unit_name, ENABLE, rule, instances or ())
            return PresetDecision(unit_name, rule.action, rule)
        return PresetDecision(unit_name, ENABLE, None)


def parse_preset_text(text: str, path: str, *,
                      systemd_version: int = OLDEST_SYSTEMD) -> tuple[list[PresetRule], list[str]]:
    """The rules of one preset file, and a "PATH:LINE: ..." note for each line systemd skips."""
    rules, problems, _ = _parse(text, path, systemd_version)
    return rules, problems


def load_presets(root: Path, scope: str, *, split_usr: bool | None = None,
                 systemd_version: int | None = None) -> PresetSet:
    """The preset rules systemd reads for `scope` ("system" or "user") in `root`.

    `systemd_version`: whose rules; by default that of the root's own systemctl, or of the
    systemctl libvirt-units runs where the root has none (see `systemd_version_of_root`).
    `split_usr`: also read /lib/systemd/system-preset, as split-usr builds of systemd before 255
    do (Debian 12); by default exactly when the version is older than 255. It makes no
    difference on a merged-/usr root, where /lib is /usr/lib.
    Symlinks are followed inside the root; `systemctl --root` follows a preset file's absolute
    symlink on the host instead, which only differs for links that are neither dangling nor
    /dev/null.
    """
    if scope not in PRESET_DIRS:
        raise ValueError(f"unknown scope {scope!r}")
    version = systemd_version if systemd_version is not None else systemd_version_of_root(root)
    if split_usr is None:
        split_usr = version < SPLIT_USR_DROPPED_IN
    dirs = PRESET_DIRS[scope] + ((SPLIT_USR_DIR,) if split_usr and scope == SYSTEM else ())
    rules: list[PresetRule] = []
    problems: list[str] = []
    for path in _preset_files(root, dirs):
        try:
            text = _read_preset_file(root, path)
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            fatal = REFUSED.format(path=path, why=why)
            return PresetSet(tuple(rules), (*problems, fatal), fatal, version)
        file_rules, file_problems, fatal = _parse(text, path, version)
        rules += file_rules
        problems += file_problems
        if fatal:
            return PresetSet(tuple(rules), tuple(problems), fatal, version)
    return PresetSet(tuple(rules), tuple(problems), "", version)


def systemd_version_of_root(root: Path) -> int:
    """The systemd version whose preset rules apply to `root`.

    That of the root's own /usr/bin/systemctl (for `/`: the host's); for a root without one
    (a fresh installroot), that of the systemctl libvirt-units runs with `--root`. Read from
    the binary, never by running it: a root's binary may not run here. Falls back to the newest
    rules we know when no version can be read.
    """
    for name in _SYSTEMCTL_IN_ROOT:
        try:
            path = resolve_in_root(root, name)
        except OSError:
            continue
        version = systemctl_version(str(path))
        if version is not None:
            return version
    version = systemctl_version(default_binary())
    return version if version is not None else NEWEST_KNOWN_SYSTEMD


def systemctl_version(binary: str) -> int | None:
    """The systemd version a systemctl binary belongs to, or None if it cannot be read."""
    try:
        st = os.stat(binary)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return _version_in_binary(os.path.realpath(binary), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _version_in_binary(path: str, size: int, mtime_ns: int) -> int | None:
    """Cached per file identity (size and mtime are part of the key): a few ms per binary."""
    try:
        with open(path, "rb") as binary, mmap.mmap(binary.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for marker, pattern in _VERSION_IN_BINARY:
                # find() first: a memchr-speed scan of the ~1 MiB binary, where a regular
                # expression's search costs dnf's process ~10 M instructions
                at = data.find(marker)
                while at >= 0:
                    found = re.compile(pattern).match(data, at)  # compiled once: re caches it
                    if found:
                        return int(found.group(1))
                    at = data.find(marker, at + 1)
    except (OSError, ValueError):  # ValueError: an empty file cannot be mapped
        return None
    return None


# --- parsing -------------------------------------------------------------------------------


def _parse(text: str, path: str, version: int) -> tuple[list[PresetRule], list[str], str]:
    rules: list[PresetRule] = []
    problems: list[str] = []
    pos = 0
    number = 0
    while pos < len(text):
        m = _LINE.match(text, pos)
        assert m is not None  # every group is optional: it matches at any position
        pos = m.end()
        raw = m.group(1)
        number += 1
        if len(raw) >= LONG_LINE_MAX // 4 and _byte_length(raw) >= LONG_LINE_MAX:
            fatal = REFUSED.format(path=f"{path}:{number}", why="line longer than 1 MiB")
            return rules, [*problems, fatal], fatal
        line = raw.strip(_WHITESPACE)
        if not line or line[0] in "#;":
            continue
        rule, problem = _parse_line(line, path, number, version)
        if rule:
            rules.append(rule)
        if problem:
            problems.append(f"{path}:{number}: {problem}")
    return rules, problems, ""


def _parse_line(line: str, path: str, number: int, version: int) -> tuple[PresetRule | None, str]:
    shown = repr(line if len(line) <= 80 else line[:77] + "...")
    argument = _after_word(line, ENABLE)
    if argument is not None:
        if not argument:
            return PresetRule(ENABLE, "", (), path, number), BARE_ENABLE
        name, *instances = re.split(r"[ \t]+", argument)  # stripped: no empty words
        if instances and not _is_unit_name(name, template=True):
            return None, NOT_A_TEMPLATE.format(name=name)
        return PresetRule(ENABLE, name, tuple(instances), path, number), ""
    argument = _after_word(line, DISABLE)
    if argument is not None:
        # systemd keeps the whole rest of the line as the pattern, spaces included.
        return PresetRule(DISABLE, argument, (), path, number), ""
    argument = _after_word(line, IGNORE)
    if argument is not None:
        if version < IGNORE_VERB_SINCE:
            return None, IGNORE_VERB.format(version=version, line=shown)
        # Parsed like `disable`: the rest of the line is the pattern; empty matches nothing.
        return PresetRule(IGNORE, argument, (), path, number), ""
    return None, BAD_LINE.format(line=shown)


def _after_word(line: str, word: str) -> str | None:
    """systemd's first_word(): `word` then whitespace or the end; what follows it, or None."""
    if not line.startswith(word):
        return None
    rest = line[len(word):]
    if rest and rest[0] not in _WHITESPACE:
        return None
    return rest.lstrip(_WHITESPACE)


def _byte_length(text: str) -> int:
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))


# --- files ---------------------------------------------------------------------------------


def _preset_files(root: Path, dirs: tuple[str, ...]) -> list[str]:
    """Every preset file (path inside the root) that counts, in the order systemd reads them."""
    chosen: dict[str, str] = {}
    for directory in dirs:
        try:
            names = [entry.name for entry in os.scandir(resolve_in_root(root, directory))]
        except OSError:
            continue  # systemd skips a missing or unreadable directory too
        for name in names:
            if name.startswith(".") or not name.endswith(".preset") or name in chosen:
                continue
            # A same-named file in a higher-priority directory wins, whatever it is: a
            # /dev/null or dangling symlink reads as nothing and so masks the lower one.
            chosen[name] = f"{directory}/{name}"
    return [chosen[name] for name in sorted(chosen, key=os.fsencode)]


def _read_preset_file(root: Path, path: str) -> str:
    """The file's text; "" for one that reads as empty or is gone; OSError where systemd fails."""
    real = resolve_in_root(root, path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return ""
    if stat.S_ISDIR(st.st_mode):
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
    if stat.S_ISCHR(st.st_mode):
        return ""  # /dev/null
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file")
    return real.read_bytes().decode("utf-8", "surrogateescape")


# --- unit names ----------------------------------------------------------------------------


def _is_unit_name(name: str, template: bool = False) -> bool:
    """systemd's unit_name_is_valid(): any kind, or (template=True) templates only.

    Wider than units.is_valid_unit_name (which also refuses a leading `-` and `@` in
    instances): what systemd accepts is what it matches.
    """
    if not name or len(name) >= UNIT_NAME_MAX:
        return False
    dot = name.rfind(".")
    if dot <= 0 or name[dot + 1:] not in UNIT_TYPES:
        return False
    if not _VALID_CHARS.issuperset(name[:dot]) or name[0] == "@":
        return False
    at = name.find("@")
    return not template or at + 1 == dot


def _instances_matched(rule: PresetRule, unit_name: str) -> tuple[str, ...] | None:
    """pattern_match_multiple_instances(): None if the rule's instance list does not apply.

    For the template: the instance units to enable, unless one of them is not a valid name,
    in which case systemd drops the list and the rule can only match the template by name.
    For an instance: () if its instance is in the list.
    """
    if not rule.instances or "@" not in unit_name:
        return None
    at = unit_name.index("@")
    dot = unit_name.rindex(".")
    if unit_name[:at + 1] + unit_name[dot:] != rule.pattern:
        return None
    instance = unit_name[at + 1:dot]
    if instance:
        return () if instance in rule.instances else None
    names = tuple(unit_name[:at + 1] + i + unit_name[dot:] for i in rule.instances)
    if all(_is_unit_name(n) for n in names):
        return names
    return None
