"""Issue 19 item 1 end to end: a unit the admin wrote is not new when a package starts shipping it.

The admin wrote their own ``virtqemud-tcp.socket`` (in /etc/systemd/system, /usr/local/lib/systemd/
system or /run/systemd/system) and enabled it. libvirt-daemon-driver-qemu 9.1.0 starts shipping a
vendor unit file of that name, whose preset says ``disable``. The stock scriptlets preset only on a
package's first install, so the admin's choice survives the upgrade; the plugin used to see only
vendor directories, took the unit for new and preset it: disabled. A unit is new only when no
directory of the unit search path had it.
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import InstallRoot

OWN_SOCKET = """\
[Unit]
Description=the admin's own TCP listener for virtqemud

[Socket]
ListenStream=16509
Service=virtqemud.service

[Install]
WantedBy=sockets.target
"""


@pytest.mark.parametrize("where", ["etc/systemd/system", "usr/local/lib/systemd/system", "run/systemd/system"])
@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_the_admins_own_unit_keeps_its_state_when_a_package_starts_shipping_it(root: InstallRoot, repos,
                                                                                 plugin, where):
    root.dnf("install", "libvirt-daemon-driver-qemu-9.0.0", repo=repos.v910, plugin=plugin)
    own = root.path / where / "virtqemud-tcp.socket"
    own.parent.mkdir(parents=True, exist_ok=True)
    own.write_text(OWN_SOCKET)
    root.systemctl("enable", "virtqemud-tcp.socket")
    assert root.is_enabled("virtqemud-tcp.socket") == "enabled"

    upgrade = root.dnf("upgrade", "libvirt-daemon-driver-qemu", repo=repos.v910, plugin=plugin)
    assert root.packages()["libvirt-daemon-driver-qemu"] == "9.1.0"
    assert (root.path / "usr/lib/systemd/system/virtqemud-tcp.socket").is_file()  # now a vendor file too
    assert root.is_enabled("virtqemud-tcp.socket") == "enabled"
    if plugin:  # a genuinely new unit of the same upgrade is still preset (the preset says enable)
        assert root.is_enabled("virtqemud-admin.socket") == "enabled"
        assert "Traceback" not in upgrade.output


@pytest.fixture
def repos(tmp_path_factory, classic_pool):
    from types import SimpleNamespace

    base = tmp_path_factory.mktemp("admin-units-repos")
    return SimpleNamespace(v910=classic_pool.make_repo(base / "v910", ["9.0.0", "9.1.0"]))
