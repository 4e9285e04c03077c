"""pytest fixtures for the end-to-end tests: fixture RPM pools (built once per session), the
split's repositories published from them, and a fresh, ready installroot per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.e2e.fixtures import Pool, build_pool
from tests.e2e.harness import DNF, InstallRoot

HERE = Path(__file__).resolve().parent
TOOLS = ("rpmbuild", "createrepo_c", "systemctl", "ldd")


def missing_requirements() -> str | None:
    """Why the end-to-end tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "end-to-end tests need root (rpm --root, chrooted scriptlets, %dev /dev/null)"
    if not os.access(DNF, os.X_OK):
        return f"{DNF} is missing (apt-get install dnf python3-dnf)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if shutil.which("busybox", path="/usr/bin:/bin") is None:
        return "busybox is missing (apt-get install busybox-static)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing_requirements()
    if reason is None:
        return
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def classic_pool(tmp_path_factory: pytest.TempPathFactory) -> Pool:
    """Every fixture package with Fedora's classic systemd scriptlets spelled out."""
    return build_pool(tmp_path_factory.mktemp("pool-classic"), "classic")


@pytest.fixture(scope="session")
def bare_pool(tmp_path_factory: pytest.TempPathFactory) -> Pool:
    """Every fixture package without unit scriptlets (only the %posttrans log line)."""
    return build_pool(tmp_path_factory.mktemp("pool-bare"), "bare")


@pytest.fixture(scope="session")
def libvirt_pool(tmp_path_factory: pytest.TempPathFactory) -> Pool:
    """Every fixture package with the shapes of libvirt's own scriptlets (fixtures.libvirt_scriptlets)."""
    return build_pool(tmp_path_factory.mktemp("pool-libvirt"), "libvirt")


@pytest.fixture(scope="session")
def repos(classic_pool: Pool, bare_pool: Pool, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The split's repositories, read-only: classic-scriptlet repos of 9.0.0 (`v900`), 9.0.0+9.1.0
    (`v910`, and `v910_nofl` without file lists), 9.0.0-9.2.0 (`v920`), and the scriptlet-free
    9.0.0-9.2.0 (`bare`). A module that needs other repositories defines its own `repos`."""
    base = tmp_path_factory.mktemp("repos")
    return SimpleNamespace(
        v900=classic_pool.make_repo(base / "v900", ["9.0.0"]),
        v910=classic_pool.make_repo(base / "v910", ["9.0.0", "9.1.0"]),
        v910_nofl=classic_pool.make_repo(base / "v910-nofl", ["9.0.0", "9.1.0"], strip_filelists=True),
        v920=classic_pool.make_repo(base / "v920", ["9.0.0", "9.1.0", "9.2.0"]),
        bare=bare_pool.make_repo(base / "bare", ["9.0.0", "9.1.0", "9.2.0"]),
    )


@pytest.fixture
def root(tmp_path: Path, classic_pool: Pool) -> InstallRoot:
    """A fresh installroot with fixture-root and fixture-presets installed."""
    installroot = InstallRoot(tmp_path / "root", tmp_path / "home")
    installroot.setup(classic_pool)
    return installroot
