"""Resolve a transaction without running it, for `libvirt-units plan`: libdnf5's Python API
where it is installed (dnf5 hosts), else dnf 4's. Both are imported only here, and only when
asked: the rest of the command runs with rpm alone.

Incoming file lists come from repository metadata (filelists are loaded on purpose), as in
`dnf libvirt-units --dry-run`; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from . import facts
from .records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Sequence

_set = object.__setattr__

TRANSACTIONS = ("upgrade", "install", "remove")


class ResolveError(RuntimeError):
    """The transaction cannot be resolved (one line for the user)."""


class Request(Record):
    __slots__ = ("root", "verb", "packages", "repofrompath", "repos", "releasever", "cacheonly")
    root: Path
    verb: str  # one of TRANSACTIONS
    packages: tuple[str, ...]
    repofrompath: tuple[tuple[str, str], ...]  # (id, path or URL) extra repositories
    repos: tuple[str, ...]  # only these repositories (default: every enabled one)
    releasever: str | None
    cacheonly: bool

    def __init__(self, root: Path, verb: str, packages: tuple[str, ...] = (),
                 repofrompath: tuple[tuple[str, str], ...] = (), repos: tuple[str, ...] = (),
                 releasever: str | None = None, cacheonly: bool = False) -> None:
        _set(self, "root", root)
        _set(self, "verb", verb)
        _set(self, "packages", packages)
        _set(self, "repofrompath", repofrompath)
        _set(self, "repos", repos)
        _set(self, "releasever", releasever)
        _set(self, "cacheonly", cacheonly)


def available() -> str | None:
    """'libdnf5', 'dnf' or None: which API this host has (libdnf5 first)."""
    for name in ("libdnf5", "dnf"):
        try:
            __import__(name)
            return name
        except ImportError:
            continue
    return None


def resolve(request: Request, api: str | None = None) -> list[facts.PackageChange]:
    api = api or available()
    if api == "libdnf5":
        return _resolve_libdnf5(request)
    if api == "dnf":
        return _resolve_dnf4(request)
    raise ResolveError("neither python3-libdnf5 nor python3-dnf is installed: cannot resolve a transaction")


# -- libdnf5 ----------------------------------------------------------------------------------

def _resolve_libdnf5(request: Request) -> list[facts.PackageChange]:
    import libdnf5

    base = libdnf5.base.Base()
    conf = base.get_config()
    conf.get_installroot_option().set(str(request.root))
    base.load_config()
    runtime = libdnf5.conf.Option.Priority_RUNTIME
    conf.get_optional_metadata_types_option().add_item(runtime, "filelists")
    if request.cacheonly:
        conf.get_cacheonly_option().set("all")
    if request.releasever:
        base.get_vars().set("releasever", request.releasever)
    base.setup()
    sack = base.get_repo_sack()
    sack.create_repos_from_system_configuration()
    for repo_id, path in request.repofrompath:
        repo = sack.create_repo(repo_id)
        repo.get_config().get_baseurl_option().set(_url(path))
    if request.repos or request.repofrompath:
        wanted = set(request.repos) or {i for i, _ in request.repofrompath}
        query = libdnf5.repo.RepoQuery(base)
        for repo in query:
            if repo.get_id() in wanted:
                repo.enable()
            else:
                repo.disable()
    if request.verb == "remove":  # the rpmdb only: no repository is needed
        sack.load_repos(libdnf5.repo.Repo.Type_SYSTEM)
    else:
        sack.load_repos()
    goal = libdnf5.base.Goal(base)
    if request.verb == "upgrade" and not request.packages:
        goal.add_rpm_upgrade()
    for spec in request.packages:
        {"upgrade": goal.add_upgrade, "install": goal.add_install, "remove": goal.add_remove}[request.verb](spec)
    if request.verb == "remove":
        goal.set_allow_erasing(True)
    transaction = goal.resolve()
    problems = list(transaction.get_resolve_logs_as_strings())
    if transaction.get_problems() != libdnf5.base.GoalProblem_NO_PROBLEM:
        raise ResolveError(f"cannot resolve the {request.verb}: " + "; ".join(problems))
    return libdnf5_changes(transaction)


def _url(path: str) -> str:
    return path if "://" in path else Path(path).resolve().as_uri()


def metadata_files(pkg: Any, inbound: bool) -> frozenset[str]:  # a libdnf5 package
    """A package's file list from repository metadata (incoming) or the rpmdb (@System)."""
    return frozenset(pkg.get_files())


def libdnf5_changes(transaction: Any, files_of: Callable[[Any, bool], frozenset[str]] = metadata_files,
                    ) -> list[facts.PackageChange]:
    """Package changes of a libdnf5 transaction, for the dry run and for the dnf5 plugin alike;
    `files_of(package, inbound)` gives each one's file list (the plugin reads rpm headers)."""
    import libdnf5

    actions = libdnf5.transaction
    words = {
        actions.TransactionItemAction_INSTALL: facts.INSTALL,
        actions.TransactionItemAction_UPGRADE: facts.UPGRADE,
        actions.TransactionItemAction_DOWNGRADE: facts.DOWNGRADE,
        actions.TransactionItemAction_REINSTALL: facts.REINSTALL,
        actions.TransactionItemAction_REMOVE: facts.ERASE,
        actions.TransactionItemAction_REPLACED: facts.ERASE,
    }
    # A new name that obsoletes an installed one is an install, as dnf 4 reports it (the
    # replaced package is its own erase item); the planner does not tell them apart.
    changes = []
    for item in transaction.get_transaction_packages():
        word = words.get(item.get_action())
        if word is None:
            continue
        pkg = item.get_package()
        files = files_of(pkg, word != facts.ERASE)
        changes.append(facts.PackageChange(pkg.get_name(), pkg.get_nevra(), word, files))
    return changes


# -- dnf 4 -----------------------------------------------------------------------------------

def _resolve_dnf4(request: Request) -> list[facts.PackageChange]:
    import dnf
    import dnf.exceptions
    import dnf.transaction

    base = dnf.Base()
    try:
        conf = base.conf
        conf.installroot = str(request.root)
        conf.read(priority=dnf.conf.PRIO_MAINCONFIG)
        conf.installroot = str(request.root)
        types = getattr(conf, "optional_metadata_types", None)  # dnf >= 4.18; before, always loaded
        if types is not None and "filelists" not in types:
            conf.optional_metadata_types = [*types, "filelists"]
        if request.releasever:
            conf.releasever = request.releasever
        for name in [k for k, v in conf.substitutions.items() if v is None]:
            # undetectable (no system-release package): libdnf's repo parser takes strings only
            del conf.substitutions[name]
        conf.cacheonly = request.cacheonly
        if str(request.root) != "/":  # as dnf's --installroot: its cache and history are the root's
            for option in ("cachedir", "persistdir"):
                conf.prepend_installroot(option)
        base.read_all_repos()
        for repo_id, path in request.repofrompath:
            base.repos.add_new_repo(repo_id, conf, baseurl=[_url(path)])
        if request.repos or request.repofrompath:
            wanted = set(request.repos) or {i for i, _ in request.repofrompath}
            for repo in base.repos.all():
                repo.enable() if repo.id in wanted else repo.disable()
        base.fill_sack(load_system_repo=True, load_available_repos=request.verb != "remove")
        if request.verb == "upgrade" and not request.packages:
            base.upgrade_all()
        for spec in request.packages:
            {"upgrade": base.upgrade, "install": base.install, "remove": base.remove}[request.verb](spec)
        base.resolve(allow_erasing=request.verb == "remove")
    except dnf.exceptions.Error as exc:
        base.close()
        raise ResolveError(f"cannot resolve the {request.verb}: {exc}") from exc
    words = {
        dnf.transaction.PKG_INSTALL: facts.INSTALL,
        dnf.transaction.PKG_UPGRADE: facts.UPGRADE,
        dnf.transaction.PKG_DOWNGRADE: facts.DOWNGRADE,
        dnf.transaction.PKG_REINSTALL: facts.REINSTALL,
        dnf.transaction.PKG_OBSOLETE: facts.OBSOLETE,
    }
    changes = [facts.PackageChange(tsi.pkg.name, str(tsi.pkg), words.get(tsi.action, facts.ERASE),
                                   frozenset(tsi.pkg.files)) for tsi in base.transaction]
    base.close()
    return changes


def describe(verb: str, packages: Sequence[str]) -> str:
    return " ".join([verb, *packages])
