"""The state files' writer: the fast paths (os calls on strings, members encoded once) write the
same bytes with the same guarantees as the straightforward json.dumps + pathlib + mkstemp; and
the summary's wrapping is textwrap's."""

from __future__ import annotations

import json
import os
import stat
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libvirt_presets import journal, render, state
from libvirt_presets.facts import PackageChange, TransactionFacts
from libvirt_presets.snapshot import Snapshot
from libvirt_presets.units import UnitKey
from libvirt_presets.words import Change, Step

TMP = [HealthCheck.function_scoped_fixture]  # each example overwrites the same files

# JSON values as the files hold them, with the text json escapes (quotes, controls, non-ASCII,
# a lone surrogate from an undecodable file name)
TEXT = st.text(max_size=12) | st.sampled_from(['"', "\\", "\udcff", "\n", "é"])
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                      max_leaves=20)


def reference(data: dict) -> bytes:
    """What the files held before the fast paths: json.dumps, sorted keys, compact, a newline."""
    return (json.dumps({"version": state.FORMAT_VERSION, **data}, sort_keys=True) + "\n").encode()


def written(root: Path, name: str) -> bytes:
    return Path(state.state_dir(root), name).read_bytes()


@settings(suppress_health_check=TMP, max_examples=300)  # each example writes two files
@given(data=st.dictionaries(TEXT, VALUES, max_size=6))
def test_write_json_and_write_encoded_write_what_json_dumps_does(tmp_path, data):
    state.write_json(tmp_path, "a.json", data, indent=None, durable=False)
    assert written(tmp_path, "a.json") == reference(data)
    state.write_encoded(tmp_path, "b.json", {key: state.encode(value) for key, value in data.items()},
                        durable=False)
    assert written(tmp_path, "b.json") == reference(data)
    assert json.loads(written(tmp_path, "b.json")) == {"version": state.FORMAT_VERSION, **data}


def test_indented_output_is_still_json_dumps(tmp_path):
    data = {"b": [1, {"z": None, "a": "x"}], "a": "é"}
    state.write_json(tmp_path, "x.json", data, indent=2)
    assert written(tmp_path, "x.json").decode() == json.dumps({"version": 1, **data}, indent=2, sort_keys=True) + "\n"


def test_the_directory_is_made_0700_with_its_parents_and_the_file_0600(tmp_path):
    root = tmp_path / "not-yet"  # even the root is created, as mkdir -p did
    state.write_json(root, "x.json", {}, durable=True)
    directory = Path(state.state_dir(root))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "x.json").stat().st_mode) == 0o600
    assert state.read_json(root, "x.json") == {"version": 1}
    assert os.listdir(directory) == ["x.json"]  # no temporary file left


@pytest.mark.parametrize("link", ["var", "var/lib", "var/lib/dnf", "var/lib/dnf/libvirt-units",
                                  "var/lib/dnf/libvirt-units/x.json"])
def test_any_symlinked_component_below_the_root_is_refused(tmp_path, link):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / state.STATE_DIR).mkdir(parents=True)
    elsewhere.mkdir()
    target = root / link
    if target.is_dir():
        os.rename(target, elsewhere / "moved")
        target.symlink_to(elsewhere / "moved")
    else:
        target.symlink_to(elsewhere / "x.json")
    with pytest.raises(OSError, match=f"{target} is a symlink"):
        state.write_json(root, "x.json", {"a": 1})
    with pytest.raises(OSError, match=f"{target} is a symlink"):
        state.read_json(root, "x.json")
    assert not [f for _, _, files in os.walk(elsewhere) for f in files]  # nothing written through it


def test_a_symlinked_root_is_fine(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "root").symlink_to(tmp_path / "real")
    state.write_json(tmp_path / "root", "x.json", {"a": 1})
    assert state.read_json(tmp_path / "real", "x.json") == {"version": 1, "a": 1}


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    state.write_json(tmp_path, "x.json", {"a": 1})

    def full_disk(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space"):
        state.write_json(tmp_path, "x.json", {"a": 2})
    monkeypatch.undo()
    assert state.read_json(tmp_path, "x.json") == {"version": 1, "a": 1}
    assert os.listdir(state.state_dir(tmp_path)) == ["x.json"]


def test_unencodable_data_touches_nothing(tmp_path):
    with pytest.raises(TypeError):
        state.write_json(tmp_path, "x.json", {"a": object()})
    assert not os.path.exists(state.state_dir(tmp_path))


def a_journal() -> journal.Journal:
    unit = UnitKey("system", "virtqemud.service")
    before = Snapshot(units={unit: "usr/lib/systemd/system/virtqemud.service"},
                      links={"etc/systemd/system/multi-user.target.wants/virtqemud.service":
                             "/usr/lib/systemd/system/virtqemud.service"})
    facts = TransactionFacts((PackageChange("libvirt", "libvirt-9.1.0-1.x86_64", Change.UPGRADE,
                                            frozenset({"/usr/lib/systemd/system/virtqemud.service"})),),
                             {unit: "libvirt"})
    return journal.read(journal.encode(before, facts, live=True, invocations={"virtqemud.service": "abc"},
                                       rpmdb_cookie="cookie", done=[], guards=("virtqemud.service",)))


def test_a_saved_journal_is_its_json_before_and_after_marking_steps(tmp_path):
    """save() encodes the facts once per journal: the file is still exactly the journal's JSON,
    after each marked step and for the next journal."""
    entry = a_journal()
    journal.save(tmp_path, entry)
    assert written(tmp_path, state.PENDING) == reference(entry.to_json())
    for step in (Step.UNGUARD, Step.PRESETS, Step.LIVE):
        entry = journal.mark_done(tmp_path, entry, step)
        assert written(tmp_path, state.PENDING) == reference(entry.to_json())
    other = journal.read({**entry.to_json(), "units_before": [], "done": []})
    journal.save(tmp_path, other)
    assert written(tmp_path, state.PENDING) == reference(other.to_json())
    assert journal.decode(journal.load(tmp_path) or {})[2] == other


# --- the summary's line wrapping ----------------------------------------------------------------------

WORDS = st.text(st.sampled_from("ab-.(),:é \t\u3000"), max_size=30) | st.lists(
    st.text(st.sampled_from("virtqemud.socket(),-"), min_size=1, max_size=25), max_size=12).map(" ".join)


@settings(max_examples=300)
@given(line=WORDS, width=st.integers(1, 40))
def test_render_wrap_is_textwrap(line, width):
    assert render.wrap(line, width) == textwrap.wrap(line, width, subsequent_indent="  ", break_on_hyphens=False)
