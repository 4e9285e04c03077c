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
import os
import re
import stat
from operator import itemgetter

from .records import Record
from .snapshot import resolve_in_root
from .systemctl import default_binary
from .units import SYSTEM, UNIT_TYPES, USER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from .host import Root

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
# Where read_line() ends a line; only text with a "\r" or "\0" needs more than str.split("\n").
_LINE = r"([^\n\r\0]*)(\n\r?\0?|\r\n?\0?|\0)?"
_GLOB_CHARS = ("*", "?", "[")  # fnmatch's only special characters under FNM_NOESCAPE


class PresetRule(tuple[str, str, tuple[str, ...], str, int]):
    """One `enable`/`disable`/`ignore` line, and where it is, so a decision can point at it.

    Made from the tuple of its fields, `PresetRule((action, pattern, instances, path, line))`,
    as time.struct_time is: a root has hundreds of preset lines, and tuple's own constructor
    makes a rule for a third of what a Record (five object.__setattr__ calls) or a `__new__`
    written in Python costs. Compared and hashed as that tuple.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        def __new__(cls, fields: tuple[str, str, tuple[str, ...], str, int]) -> PresetRule: ...
        @property
        def action(self) -> str: ...
        @property
        def pattern(self) -> str: ...
        @property
        def instances(self) -> tuple[str, ...]: ...
        @property
        def path(self) -> str: ...
        @property
        def line(self) -> int: ...
    else:
        action = property(itemgetter(0), doc="enable, disable or ignore")
        pattern = property(itemgetter(1), doc="the unit name or glob; empty for a bare verb")
        instances = property(itemgetter(2), doc="the instances listed after a template's name")
        path = property(itemgetter(3), doc="the preset file, as a path inside the root")
        line = property(itemgetter(4), doc="the line's number in that file, from 1")

    def __repr__(self) -> str:
        return (f"PresetRule(action={self[0]!r}, pattern={self[1]!r}, instances={self[2]!r}, path={self[3]!r}, "
                f"line={self[4]!r})")

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


class SystemdVersion(Record):
    """The systemd version whose rules apply: `known`, or else that of `root` (see
    `systemd_version_of_root`), read only when asked.

    Reading it scans a ~1 MiB systemctl binary (~2.3 M instructions in dnf's process), and the
    preset files of most roots read the same under every version we model: the version only
    matters for an `ignore` line, or for a /lib/systemd/system-preset that is not /usr/lib's.
    """

    __slots__ = ("root", "known")
    root: Root | None
    known: int | None

    def __init__(self, root: Root | None, known: int | None = None) -> None:
        _set(self, "root", root)
        _set(self, "known", known)

    @property
    def number(self) -> int:
        if self.known is not None:
            return self.known
        return systemd_version_of_root(self.root) if self.root is not None else NEWEST_KNOWN_SYSTEMD


class PresetSet(Record):
    """All rules of one scope in the order systemd tries them; the first match wins.

    `fatal` is set when systemctl would refuse every preset of this scope (it cannot read a
    preset file); `problems` also lists the lines it skips.
    """

    __slots__ = ("rules", "problems", "fatal", "version", "_index")
    rules: tuple[PresetRule, ...]
    problems: tuple[str, ...]
    fatal: str
    version: SystemdVersion  # whose rules these are
    _index: _RuleIndex | None  # a cache (records.py): made on the first decision

    def __init__(self, rules: tuple[PresetRule, ...], problems: tuple[str, ...], fatal: str = "",
                 version: int | SystemdVersion = OLDEST_SYSTEMD) -> None:
        _set(self, "rules", rules)
        _set(self, "problems", problems)
        _set(self, "fatal", fatal)
        _set(self, "version", version if isinstance(version, SystemdVersion) else SystemdVersion(None, version))
        _set(self, "_index", None)

    @property
    def systemd_version(self) -> int:
        """Whose rules these are (read from the root's systemctl now if loading did not need it)."""
        return self.version.number

    def decide(self, unit_name: str) -> PresetDecision:
        """The first rule that matches decides; ValueError for a name systemd refuses too.

        Most rules name one unit, which no other name matches: the first of those naming this
        unit is looked up, and only the rules before it that may match other names are tried,
        rather than every rule of a root's hundreds.
        """
        if not _is_unit_name(unit_name):
            raise ValueError(f"not a unit name: {unit_name!r}")  # systemd: EINVAL
        if self.fatal:
            return PresetDecision(unit_name, IGNORE, None, problem=self.fatal)
        index = self._index
        if index is None:
            index = _index_rules(self.rules)
            _set(self, "_index", index)
        first_named, others = index
        named = first_named.get(unit_name, len(self.rules))
        for position, rule, matches in others:
            if position > named:
                break
            if not rule.pattern and rule.action == ENABLE:
                return PresetDecision(unit_name, IGNORE, rule, problem=f"{rule}: {BARE_ENABLE}")
            instances = _instances_matched(rule, unit_name) if rule.instances else None
            if instances is None and not matches(unit_name):
                continue
            return PresetDecision(unit_name, rule.action, rule, instances or ())
        if named < len(self.rules):
            rule = self.rules[named]
            return PresetDecision(unit_name, rule.action, rule)
        return PresetDecision(unit_name, ENABLE, None)


if TYPE_CHECKING:
    # The position of the first rule naming each unit, and the other rules (globs, templates with
    # instances, bare verbs) in order, with their matchers.
    _RuleIndex = tuple[dict[str, int], list[tuple[int, PresetRule, Callable[[str], bool]]]]


def _index_rules(rules: tuple[PresetRule, ...]) -> _RuleIndex:
    """Made once per set, before its first decision. It runs over every rule of a root (~2 k
    instructions a rule), hence _is_literal's test written out and the fields taken by index."""
    first_named: dict[str, int] = {}
    others = []
    for position, rule in enumerate(rules):
        pattern = rule[1]
        if rule[2] or not pattern or "*" in pattern or "?" in pattern or "[" in pattern or "\0" in pattern:
            others.append((position, rule, _matcher(pattern)))
        elif pattern not in first_named:
            first_named[pattern] = position
    return first_named, others


def _is_literal(pattern: str) -> bool:
    """Whether fnmatch(pattern, name) is pattern == name (FNM_NOESCAPE: `\\` is no escape; the C
    pattern ends at a NUL)."""
    return "*" not in pattern and "?" not in pattern and "[" not in pattern and "\0" not in pattern


@functools.lru_cache(maxsize=1024)
def _matcher(pattern: str) -> Callable[[str], bool]:
    """A test equal to `glob_match(pattern, name)` for unit names (no NUL), made once per pattern.

    Most preset lines name one unit, and most globs have one `*` (`disable *`,
    `disable *-tls.socket`): string comparisons answer those, and the glibc port (and its
    import) is left for the rest.
    """
    if _is_literal(pattern):
        return pattern.__eq__
    if "\0" not in pattern:
        head, _, tail = pattern.partition("*")
        if not any(c in head or c in tail for c in _GLOB_CHARS):
            least = len(head) + len(tail)
            return lambda name: len(name) >= least and name.startswith(head) and name.endswith(tail)
    from .glibc_fnmatch import glob_match

    return functools.partial(glob_match, pattern)


def parse_preset_text(text: str, path: str, *,
                      systemd_version: int = OLDEST_SYSTEMD) -> tuple[list[PresetRule], list[str]]:
    """The rules of one preset file, and a "PATH:LINE: ..." note for each line systemd skips."""
    rules, problems, _ = _parse(text, path, lambda: systemd_version)
    return rules, problems


def load_presets(root: Root, scope: str, *, split_usr: bool | None = None,
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
    known: list[int] = [] if systemd_version is None else [systemd_version]

    def version() -> int:
        """Read from the root's systemctl only when a rule depends on it (SystemdVersion)."""
        if not known:
            known.append(systemd_version_of_root(root))
        return known[0]

    files = _preset_files(root, PRESET_DIRS[scope] + ((SPLIT_USR_DIR,) if scope == SYSTEM else ()))
    if scope == SYSTEM and any(path.startswith(SPLIT_USR_DIR + "/") for path, _ in files):
        if split_usr is None:
            split_usr = version() < SPLIT_USR_DROPPED_IN
        if not split_usr:
            # without /lib the names it alone had are gone, and nothing else changes
            files = [f for f in files if not f[0].startswith(SPLIT_USR_DIR + "/")]
    rules: list[PresetRule] = []
    problems: list[str] = []
    fatal = ""
    for path, real in files:
        try:
            text = _read_preset_file(root, path, real)
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            fatal = REFUSED.format(path=path, why=why)
            problems.append(fatal)
            break
        file_rules, file_problems, fatal = _parse(text, path, version)
        rules += file_rules
        problems += file_problems
        if fatal:
            break
    return PresetSet(tuple(rules), tuple(problems), fatal, SystemdVersion(root, known[0] if known else None))


def systemd_version_of_root(root: Root) -> int:
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
    import mmap  # an extension module to load: ~0.4 M instructions, for the rare root that needs it

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


def _parse(text: str, path: str, version: Callable[[], int]) -> tuple[list[PresetRule], list[str], str]:
    """`version` is asked only for an `ignore` line: SystemdVersion says why."""
    rules: list[PresetRule] = []
    problems: list[str] = []
    for number, raw in enumerate(_lines(text), 1):
        if len(raw) >= LONG_LINE_MAX // 4 and _byte_length(raw) >= LONG_LINE_MAX:
            fatal = REFUSED.format(path=f"{path}:{number}", why="line longer than 1 MiB")
            return rules, [*problems, fatal], fatal
        line = raw.strip(_WHITESPACE)
        if not line or line[0] in "#;":
            continue
        rule, problem = _parse_line(line, path, number, version)
        if rule is not None:
            rules.append(rule)
        if problem:
            problems.append(f"{path}:{number}: {problem}")
    return rules, problems, ""


def _lines(text: str) -> list[str]:
    """The lines as read_line() ends them (at "\n", "\r", "\0" and their pairs), without ends."""
    if "\r" in text or "\0" in text:
        lines = []
        pos = 0
        line = re.compile(_LINE)
        while pos < len(text):
            m = line.match(text, pos)
            assert m is not None  # every group is optional: it matches at any position
            pos = m.end()
            lines.append(m.group(1))
        return lines
    lines = text.split("\n")
    if not lines[-1]:
        lines.pop()  # what follows the last "\n" is a line only if it is not empty
    return lines


def _parse_line(line: str, path: str, number: int, version: Callable[[], int]) -> tuple[PresetRule | None, str]:
    # systemd's first_word(): the verb ends at the first whitespace; the line is stripped and
    # ends at "\n" and "\r", so only " " and "\t" are left of its whitespace. One partition
    # finds the verb (a tab in what precedes the first space came first), rather than trying
    # each verb in turn.
    verb, _, argument = line.partition(" ")
    if "\t" in verb:
        verb, _, argument = line.partition("\t")
    argument = argument.lstrip(_WHITESPACE)
    if verb == ENABLE:
        if not argument:
            return PresetRule((ENABLE, "", (), path, number)), BARE_ENABLE
        if " " not in argument and "\t" not in argument:
            return PresetRule((ENABLE, argument, (), path, number)), ""  # one name: the usual line
        name, *instances = [word for word in argument.replace("\t", " ").split(" ") if word]
        if instances and not _is_unit_name(name, template=True):
            return None, NOT_A_TEMPLATE.format(name=name)
        return PresetRule((ENABLE, name, tuple(instances), path, number)), ""
    if verb == DISABLE:
        # systemd keeps the whole rest of the line as the pattern, spaces included.
        return PresetRule((DISABLE, argument, (), path, number)), ""
    if verb == IGNORE:
        if version() < IGNORE_VERB_SINCE:
            return None, IGNORE_VERB.format(version=version(), line=_shown(line))
        # Parsed like `disable`: the rest of the line is the pattern; empty matches nothing.
        return PresetRule((IGNORE, argument, (), path, number)), ""
    return None, BAD_LINE.format(line=_shown(line))


def _shown(line: str) -> str:
    return repr(line if len(line) <= 80 else line[:77] + "...")


def _byte_length(text: str) -> int:
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))


# --- files ---------------------------------------------------------------------------------


def _preset_files(root: Root, dirs: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """Every preset file that counts, in the order systemd reads them: its path inside the
    root, and where it is on this host if it is a plain file (neither a link nor anything
    else: then `_read_preset_file` need not resolve it again)."""
    chosen: dict[str, tuple[str, str | None]] = {}
    for directory in dirs:
        try:
            real_dir = resolve_in_root(root, directory)
            entries = list(os.scandir(real_dir))
        except OSError:
            continue  # systemd skips a missing or unreadable directory too
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.endswith(".preset") or name in chosen:
                continue
            # A same-named file in a higher-priority directory wins, whatever it is: a
            # /dev/null or dangling symlink reads as nothing and so masks the lower one.
            chosen[name] = (f"{directory}/{name}", entry.path if _is_plain(entry) else None)
    return [chosen[name] for name in sorted(chosen, key=os.fsencode)]


def _is_plain(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file(follow_symlinks=False)  # the entry's d_type: no system call
    except OSError:
        return False


def _read_preset_file(root: Root, path: str, plain: str | None = None) -> str:
    """The file's text; "" for one that reads as empty or is gone; OSError where systemd fails.

    `plain`: the file, known to be a regular file and no link (from its directory entry)."""
    if plain is not None:
        try:
            with open(plain, "rb") as file:
                return file.read().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return ""  # gone since the directory was read
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
    with open(real, "rb") as file:
        return file.read().decode("utf-8", "surrogateescape")


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
