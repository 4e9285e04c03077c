"""Differential test: our preset evaluator against the real `systemctl preset` (offline, --root).

It runs against the systemctl of the stack it runs on (252 on Debian 12, 257 in trixie, 262 in
sid: see scripts/stacks.py), and the evaluator must pick that version's rules by itself: the
scratch roots have no systemctl, so load_presets() takes the version of the one it would run.

Hundreds of seeded random roots, each with preset files scattered over the preset directories
(shared names so that precedence and masking matter, /dev/null and dangling masks, globs,
template lines with instances, comments, garbage) and a few unit files. For every unit our
decision must equal what systemctl did: enable ⇔ its link exists (and `is-enabled` says
"enabled"), disable ⇔ no link; for a template, exactly the predicted instances get links.

Batching is sound only where units cannot meet inside one systemctl call: generated units
have no Also=, and a template runs in a separate call from its instances (systemctl skips a
unit already queued by its template's instance list). Roots start without links, so a
`disable` in the same call cannot remove what another unit enables.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from libvirt_presets.presets import (
    IGNORE_VERB_SINCE,
    PRESET_DIRS,
    SPLIT_USR_DIR,
    PresetDecision,
    load_presets,
    systemctl_version,
)
from libvirt_presets.units import ENABLEMENT_DIRS, SYSTEM, USER

SYSTEMCTL = shutil.which("systemctl")
pytestmark = pytest.mark.skipif(SYSTEMCTL is None, reason="systemctl is missing")
VERSION = systemctl_version(SYSTEMCTL) if SYSTEMCTL else None

CASES = 520
USER_EVERY = 5  # every fifth case is a user-scope (--global) case
SEED = 252
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "SYSTEMD_LOG_LEVEL": "err"}
SIGSEGV_RC = -11

PLAIN_UNITS = [p + s for p in ("virtproxyd", "virtqemud", "libvirtd", "virtlogd", "a", "b", "ab")
               for s in (".service", ".socket", "-tls.socket", "-ro.socket")]
TEMPLATES = ["foo@.service", "virt-guest@.service", "b@.service"]
INSTANCE_ARGS = ["a", "b", "c", "x-y", "1"]
GLOBS = ["virt*", "*.socket", "*-tls.socket", "*", "virt?roxyd.socket", "[ab].service", "[!a]*.service",
         "[^v]*", "*@*", "foo@*", "?.service", "*d.s*", "[a-c]*", "libvirtd.*", "b@?.service", "*[.]socket",
         "a*", "*-ro.*", "virt[pq]*", "*@.service", "[[:alpha:]]b.*", "\\*"]
FILE_NAMES = ["10-a.preset", "50-virt.preset", "80-libvirt.preset", "90-default.preset", "99-all.preset"]
IGNORED_FILE_NAMES = [".50-hidden.preset", "50-virt.preset.rpmnew", "70-x.presets"]
MASKS = {"<mask:/dev/null>": "/dev/null", "<mask:dangling>": "/nonexistent/x.preset"}
DIR = "<directory>"  # a directory named *.preset: systemctl fails with EISDIR
GARBAGE = ["ignore {u}", "bogus line", "enable {u} extra", "Enable {u}", "enable{u}", "disable\t{u}",
           "  # indented comment", "; semicolon comment", "enable foo@.service a b,c", "\t"]


@dataclass
class Case:
    index: int
    scope: str
    merged_usr: bool
    units: dict[str, str]  # unit name -> DefaultInstance= ("" for none or not a template)
    files: dict[str, str] = field(default_factory=dict)  # path in root -> text, or a MASKS/DIR marker

    @property
    def templates(self) -> list[str]:
        return [u for u in self.units if u.split("@")[-1].startswith(".")]

    @property
    def singles(self) -> list[str]:
        return [u for u in self.units if u not in self.templates]

    def describe(self) -> str:
        lines = [f"case {self.index}: scope={self.scope} merged_usr={self.merged_usr}",
                 f"  units: {self.units}"]
        for path, text in sorted(self.files.items()):
            lines.append(f"  {path}: " + (f"-> {MASKS[text]}" if text in MASKS else repr(text)))
        return "\n".join(lines)


def make_case(index: int) -> Case:
    rnd = random.Random(SEED * 100_000 + index)
    scope = USER if index % USER_EVERY == 0 else SYSTEM
    units: dict[str, str] = dict.fromkeys(rnd.sample(PLAIN_UNITS, rnd.randint(2, 6)), "")
    for template in rnd.sample(TEMPLATES, rnd.randint(0, 2)):
        units[template] = rnd.choice(["", "", "def", "a"])
        for arg in rnd.sample(INSTANCE_ARGS, rnd.randint(0, 3)):
            units[template.replace("@", "@" + arg)] = ""
    case = Case(index, scope, merged_usr=rnd.random() < 0.5, units=units)
    dirs = list(PRESET_DIRS[scope]) + ([SPLIT_USR_DIR] if scope == SYSTEM and not case.merged_usr else [])
    for _ in range(rnd.randint(0, 5)):
        name = rnd.choice(FILE_NAMES + IGNORED_FILE_NAMES[:1] * (rnd.random() < 0.1))
        case.files[f"{rnd.choice(dirs)}/{name}"] = preset_text(rnd, list(units))
    if rnd.random() < 0.05:
        case.files[f"{rnd.choice(dirs)}/{rnd.choice(IGNORED_FILE_NAMES)}"] = "disable *\n"
    for path in list(case.files):  # mask some files from a higher-priority directory
        directory, name = path.rsplit("/", 1)
        higher = dirs[:dirs.index(directory)]
        if higher and rnd.random() < 0.25:
            case.files[f"{rnd.choice(higher)}/{name}"] = rnd.choice(list(MASKS))
    if rnd.random() < 0.01:
        case.files[f"{rnd.choice(dirs)}/60-dir.preset"] = DIR
    return case


def preset_text(rnd: random.Random, units: list[str]) -> str:
    def pattern() -> str:
        roll = rnd.random()
        if roll < 0.45:
            return rnd.choice(units)
        if roll < 0.55:
            return rnd.choice(PLAIN_UNITS + TEMPLATES)
        return rnd.choice(GLOBS)

    lines = []
    for _ in range(rnd.randint(0, 8)):
        roll = rnd.random()
        if roll < 0.35:
            lines.append(f"enable {pattern()}")
        elif roll < 0.65:
            lines.append(f"disable {pattern()}")
        elif roll < 0.78:
            args = rnd.sample(INSTANCE_ARGS, rnd.randint(1, 3))
            lines.append(f"enable {rnd.choice(TEMPLATES)} {' '.join(args)}")
        elif roll < 0.85:
            lines.append(rnd.choice(["", "# comment", "   ", "#enable *"]))
        elif roll < 0.994:
            lines.append(rnd.choice(GARBAGE).format(u=rnd.choice(units)))
        else:
            lines.append("enable")  # crashes systemctl (252, 257, 262) for every unit that reaches it
    ending = "\r\n" if rnd.random() < 0.1 else "\n"
    return "".join(f"{rnd.choice(['', ' ', chr(9)]) if rnd.random() < 0.1 else ''}{line}{ending}"
                   for line in lines)


def unit_file(name: str, scope: str, default_instance: str) -> str:
    socket = name.endswith(".socket")
    wanted_by = "sockets.target" if socket else ("multi-user.target" if scope == SYSTEM else "default.target")
    body = "[Socket]\nListenStream=/run/x.sock\n" if socket else "[Service]\nExecStart=/bin/true\n"
    extra = f"DefaultInstance={default_instance}\n" if default_instance else ""
    return f"[Unit]\nDescription={name}\n{body}[Install]\nWantedBy={wanted_by}\n{extra}"


def build_root(case: Case, root: Path) -> None:
    unit_dir = root / ("usr/lib/systemd/system" if case.scope == SYSTEM else "usr/lib/systemd/user")
    unit_dir.mkdir(parents=True)
    if case.merged_usr:
        os.symlink("usr/lib", root / "lib")
    for template in case.templates:
        (unit_dir / template).write_text(unit_file(template, case.scope, case.units[template]))
    for unit in case.singles:
        if "@" not in unit:
            (unit_dir / unit).write_text(unit_file(unit, case.scope, ""))
    for path, text in case.files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if text in MASKS:
            os.symlink(MASKS[text], target)
        elif text == DIR:
            target.mkdir()
        else:
            target.write_text(text)


def systemctl(root: Path, scope: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [SYSTEMCTL, f"--root={root}", *(["--global"] if scope == USER else []), *args]
    return subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=60, check=False)


def linked_units(root: Path, scope: str) -> set[str]:
    return {p.name for p in (root / ENABLEMENT_DIRS[scope]).rglob("*") if p.is_symlink()}


def expected_instances(template: str, decision: PresetDecision, default_instance: str) -> set[str]:
    if decision.action != "enable":
        return set()
    if decision.instances:
        return set(decision.instances)
    return {template.replace("@", "@" + default_instance)} if default_instance else set()


def fails(decision: PresetDecision) -> bool:
    """systemctl changes nothing for this unit because the call fails (crash or refusal), not
    because an `ignore` rule says so."""
    return decision.action == "ignore" and bool(decision.problem)


def check_batch(root: Path, case: Case, batch: list[str], decisions: dict[str, PresetDecision],
                want_links: set[str], problems: list[str]) -> set[str]:
    """Run one `systemctl preset` over `batch`; returns the links it made."""
    result = systemctl(root, case.scope, "--quiet", "preset", "--", *batch)
    links = linked_units(root, case.scope)
    failing = [decisions[u] for u in batch if fails(decisions[u])]
    if failing:
        fatal = any(d.rule is None for d in failing)
        want_rc, want_links = (1 if fatal else SIGSEGV_RC), set()
    else:
        want_rc = 0
    if result.returncode != want_rc or links != want_links:
        problems.append(f"preset {batch}: rc {result.returncode} (want {want_rc}), links {sorted(links)} "
                        f"(want {sorted(want_links)}); stderr {result.stderr.strip()!r}")
    return links


def run_case(case: Case, root: Path) -> tuple[list[str], Counter]:
    build_root(case, root)
    presets = load_presets(root, case.scope)
    decisions = {u: presets.decide(u) for u in case.units}
    seen = Counter(d.action for d in decisions.values())
    seen.update(f"template:{'instances' if d.instances else d.action}"
                for u, d in decisions.items() if u in case.templates)
    seen.update(["fatal"] * bool(presets.fatal) + ["problems"] * bool(presets.problems))
    seen.update(["crash"] * any(fails(d) and d.rule for d in decisions.values()))
    seen.update(["ignored"] * any(d.action == "ignore" and not d.problem for d in decisions.values()))
    seen.update(["version"] * (presets.systemd_version == VERSION))
    seen.update(["masked"] * any(text in MASKS for text in case.files.values()))
    problems: list[str] = []

    singles = case.singles
    check_batch(root, case, singles, decisions,
                {u for u in singles if decisions[u].action == "enable"}, problems)
    if not problems and not any(fails(decisions[u]) for u in singles):
        words = systemctl(root, case.scope, "is-enabled", "--", *singles).stdout.split()
        want = ["enabled" if decisions[u].action == "enable" else "disabled" for u in singles]
        if words != want:
            problems.append(f"is-enabled {singles}: {words} (want {want})")
    shutil.rmtree(root / ENABLEMENT_DIRS[case.scope], ignore_errors=True)

    if case.templates:
        want_links = set().union(*(expected_instances(t, decisions[t], case.units[t]) for t in case.templates))
        check_batch(root, case, case.templates, decisions, want_links, problems)

    if problems:
        ours = "\n".join(f"  ours: {u} -> {d.action} {list(d.instances)} ({d.reason})"
                         for u, d in decisions.items())
        return [f"{case.describe()}\n{ours}\n  " + "\n  ".join(problems)], seen
    return [], seen


def test_evaluator_matches_systemctl_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert VERSION is not None, f"cannot read the systemd version of {SYSTEMCTL}"
    started = time.monotonic()
    cases = [make_case(i) for i in range(CASES)]
    with ThreadPoolExecutor(max_workers=max(4, 2 * (os.cpu_count() or 1))) as pool:
        results = list(pool.map(lambda c: run_case(c, tmp_path / f"case{c.index}"), cases))
    elapsed = time.monotonic() - started

    mismatches = [m for found, _ in results for m in found]
    seen = sum((counts for _, counts in results), Counter())
    with capsys.disabled():  # shown without -s: scripts/stacks.py repeats it per stack
        print(f"\npreset differential: {len(cases)} cases against systemctl {VERSION} ({SYSTEMCTL}), "
              f"{len(mismatches)} differences ({sum(c.scope == USER for c in cases)} user scope, "
              f"{sum(len(c.units) for c in cases)} units, {elapsed:.1f} s)")
        print(f"preset differential outcomes: {dict(sorted(seen.items()))}")
    assert seen["version"] == len(cases), f"the evaluator did not pick systemd {VERSION}'s rules"
    assert not mismatches, f"{len(mismatches)} of {len(cases)} cases differ:\n\n" + "\n\n".join(mismatches[:10])
    # The generator must have exercised every kind of outcome, or a pass proves little.
    kinds = ["enable", "disable", "crash", "fatal", "masked", "problems",
             "template:instances", "template:enable", "template:disable"]
    if VERSION >= IGNORE_VERB_SINCE:
        kinds.append("ignored")
    for kind in kinds:
        assert seen[kind] > 0, f"no case produced {kind!r}"
