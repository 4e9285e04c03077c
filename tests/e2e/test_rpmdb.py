"""rpmdb.owners_and_cookie reads one header per owning package (and none for the packages a
transaction set erases): its answers and cookie must be those of the straightforward lookup, one
rpm query per unit file, on real rpm databases."""

from __future__ import annotations

import json

from tests.e2e.fixtures import run
from tests.e2e.harness import REPO_ROOT, InstallRoot, monolithic_host

# In a subprocess: rpm reads its macros (the root's %_dbpath) through HOME when it is imported.
COMPARE = r"""
import json, sys
from pathlib import Path
import rpm
from libvirt_presets import rpmdb
from libvirt_presets.snapshot import take_snapshot

root = Path(sys.argv[1])
units = dict(take_snapshot(root).units)

def naive():  # the lookup before the dedupe: one query per unit file, first match wins
    found = {}
    ts = rpm.TransactionSet(str(root))
    for key, rel in units.items():
        for path in rpmdb._path_variants("/" + rel):
            for hdr in ts.dbMatch("basenames", path):
                found[key] = rpmdb.nevra(hdr)
                break
            if key in found:
                break
    ts.closeDB()
    return found

def dnf_like(erase):  # a set like dnf 4's at pre_transaction: database open, erasures added
    ts = rpm.TransactionSet(str(root))
    ts.openDB()
    for hdr in ts.dbMatch():
        if hdr["name"] in erase:
            ts.addErase(hdr)
    ts.order()
    ts.clean()
    return ts

def show(result):
    owners, cookie = result
    return [sorted([k.scope, k.name, v] for k, v in owners.items()), cookie]

names = sorted({hdr["name"] for hdr in rpm.TransactionSet(str(root)).dbMatch()})
libvirt = [n for n in names if n.startswith("libvirt")]
ts = dnf_like(libvirt)
flags = ts.getVSFlags()
out = {
    "naive": show((naive(), rpmdb.cookie(root))),
    "own": show(rpmdb.owners_and_cookie(root, units)),
    "all_erased": show(rpmdb.owners_and_cookie(root, units, ts)),
    "some_erased": show(rpmdb.owners_and_cookie(root, units, dnf_like(libvirt[::2]))),
    "closed_db": show(rpmdb.owners_and_cookie(root, units, rpm.TransactionSet(str(root)))),
    "flags_kept": ts.getVSFlags() == flags,
    "elements_kept": sum(1 for _ in ts) == len([n for n in names if n in libvirt]),
    "erased": len(rpmdb._erased(ts)),
}
print(json.dumps(out))
"""


def compare(root: InstallRoot) -> dict:
    proc = run(["/usr/bin/python3", "-c", COMPARE, str(root.path)],
               env={**root.env, "PYTHONPATH": str(REPO_ROOT)})
    return json.loads(proc.stdout)


def test_owners_and_cookie_answer_as_one_query_per_unit(root, repos):
    monolithic_host(root, repos.v900, plugin=False)
    checked = []
    for repo in (None, repos.v910):  # the monolithic 9.0.0, then the split 9.1.0
        if repo is not None:
            root.dnf("upgrade", repo=repo, plugin=False)
        out = compare(root)
        naive = out["naive"]
        assert len(naive[0]) > 10 and naive[1], "a root without owned units proves nothing"
        assert out["own"] == naive
        assert out["all_erased"] == naive
        assert out["some_erased"] == naive
        assert out["closed_db"] == naive  # not open: falls back to opening its own
        assert out["flags_kept"] and out["elements_kept"] and out["erased"]
        checked.append({owner for _, _, owner in naive[0]})
    assert len(checked[1]) > 2 and checked[0] != checked[1]  # several owners, and other ones
