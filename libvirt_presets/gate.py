"""Does a transaction concern libvirt-units at all? Decided before the core is imported.

Most dnf transactions touch no unit: a `dnf upgrade bash` must not pay for the core's import,
an rpmdb query and a journal (issue 16: the plugin then costs dnf < 1 % more instructions).
The test is conservative, a superset of what the planner can act on: a transaction concerns
us when a package coming in or going out has a file under a systemd directory, when a
[triggers] key of the configuration (a default one included, whatever a drop-in says) matches
one of its packages or files, or when an earlier transaction's journal is pending. Anything
this module cannot read (a configuration file that is no regular file, say) counts as
concerning: the core then decides and reports it, as it always did.

What is given up is deliberate: a scriptlet of a package that ships no unit and matches no
trigger may still disable or stop a managed unit, and the plugin does not repair that (it
never watched such transactions for the running state either: restarts follow packages).

Only the standard library, and modules dnf itself has already loaded: this module is imported
by the dnf plugins on every transaction, the rest of the package only when this one says so.
"""

from __future__ import annotations

import fnmatch
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# The logger of the plugins and the core (report.log): dnf shows "dnf.plugin.*" records. Here,
# not in report.py, because the dnf plugins name it on every dnf command and import only this module.
LOGGER_NAME = "dnf.plugin.libvirt-units"
CONFIG_FILE = "/etc/dnf/plugins/libvirt-units.conf"
DROPIN_DIR = "libvirt-units.d"
# A configuration file is a few KiB; anything this big is not one (a device, a stray dump).
CONFIG_SIZE_MAX = 1024 * 1024
# The shipped [triggers]: a package-name glob, or an absolute file glob, -> services.
DEFAULT_TRIGGERS = {
    "libvirt-daemon-config-network": ("libvirtd.service", "virtnetworkd.service"),
    "libvirt-daemon-config-nwfilter": ("libvirtd.service", "virtnwfilterd.service"),
}
# Every directory a package could ship a unit, a drop-in or a preset in (both scopes, /lib
# for roots without merged /usr): wider than the unit search path on purpose.
SYSTEMD_DIRS = ("/usr/lib/systemd/", "/lib/systemd/", "/etc/systemd/", "/usr/local/lib/systemd/")
_GLOB = frozenset("*?[")  # what makes a trigger a glob for fnmatch
STATE_DIR = "var/lib/dnf/libvirt-units"
PENDING = "pending.json"  # the journal of an unfinished transaction (journal.py)


def config_files(main: str = CONFIG_FILE) -> list[str]:
    """The configuration: the main file, then the drop-ins beside it in name order."""
    dropins = os.path.join(os.path.dirname(main), DROPIN_DIR)
    try:
        names = sorted(n for n in os.listdir(dropins) if n.endswith(".conf"))
    except OSError:
        names = []
    return [main, *(os.path.join(dropins, n) for n in names)]


def journal_pending(root: str) -> bool:
    """An earlier transaction left its journal: the core must complete it."""
    return os.path.lexists(os.path.join(root, STATE_DIR, PENDING))


def read_text(path: str) -> str | None:
    """The text of one configuration file (undecodable bytes kept as surrogates), None if it is
    absent. Opened non-blocking and checked to be a regular file: a FIFO or a device put there
    by mistake must neither hang dnf nor fill its memory (OSError then)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        data = handle.read(CONFIG_SIZE_MAX + 1)
    if len(data) > CONFIG_SIZE_MAX:
        raise OSError(f"larger than {CONFIG_SIZE_MAX // 1024} KiB")
    return data.decode("utf-8", "surrogateescape")


def trigger_patterns(paths: Iterable[str]) -> set[str]:
    """Every key of a [triggers] section in these files, plus the default ones. A superset of
    the triggers config.py accepts: invalid or emptied keys count too. OSError, naming the
    file, on one that cannot be read: the core must read it then."""
    patterns = set(DEFAULT_TRIGGERS)
    for path in paths:
        try:
            text = read_text(path)
        except OSError as exc:
            raise OSError(f"{path}: {exc.strerror or exc}") from exc
        in_triggers = False
        for raw in (text or "").replace("\r", "\n").split("\n"):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                in_triggers = line.endswith("]") and line[1:-1].strip() == "triggers"
            elif in_triggers and "=" in line:
                patterns.add(line.split("=", 1)[0].strip())
    return patterns


def concerns(packages: Iterable[tuple[str, Iterable[str]]], triggers: set[str]) -> str | None:
    """Why the transaction concerns us (a short reason), or None when it provably does not.
    `packages`: (name, files) of every package coming in or going out. Plain names are
    compared as strings: fnmatch compiles a regular expression for each pattern it meets."""
    names = {t for t in triggers if not t.startswith("/") and not _GLOB.intersection(t)}
    paths = {t for t in triggers if t.startswith("/") and not _GLOB.intersection(t)}
    globs = [t for t in triggers if _GLOB.intersection(t)]
    name_globs = [g for g in globs if not g.startswith("/")]
    path_globs = [g for g in globs if g.startswith("/")]
    for name, files in packages:
        if name in names:
            return f"{name} matches the trigger {name}"
        for glob in name_globs:
            if fnmatch.fnmatchcase(name, glob):
                return f"{name} matches the trigger {glob}"
        for path in files:
            if path.startswith(SYSTEMD_DIRS):
                return f"{name} ships {path}"
            if path in paths:
                return f"{name} ships {path}, a trigger"
            for glob in path_globs:
                if fnmatch.fnmatchcase(path, glob):
                    return f"{name} ships {path}, which matches the trigger {glob}"
    return None
