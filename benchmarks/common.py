"""Small helpers shared by the benchmarks: statistics, machine facts, markdown."""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else math.nan


def median_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median: the order statistics x(k), x(n-k+1)
    with the widest k whose binomial coverage is still >= level. (nan, nan) when n is too small."""
    xs = sorted(values)
    n = len(xs)
    best = None
    for k in range(1, n // 2 + 1):
        coverage = 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n
        if coverage >= level:
            best = k
    return (xs[best - 1], xs[n - best]) if best else (math.nan, math.nan)


def verdict_of_interval(low: float, high: float, target: float) -> bool | None:
    """True when the whole interval is within the target, False when none of it is, else None."""
    if math.isnan(low):
        return None
    return True if high <= target else False if low > target else None


def spread(values: Sequence[float], fmt: str = "{:.3f}") -> str:
    """`median (min–max)` of a list of figures."""
    if not values:
        return "n/a"
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def seconds(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"


def kib(value: float) -> str:
    return f"{value / 1024:,.0f} KiB" if value < 10 * 1024 * 1024 else f"{value / 1048576:,.1f} MiB"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _out(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "n/a"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1048576:.1f} GiB"
    except OSError:
        pass
    return "n/a"


def _os_release() -> str:
    try:
        fields = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines()
                      if "=" in line)
        name = fields.get("PRETTY_NAME", "").strip('"')
    except OSError:
        name = ""
    try:
        debian = Path("/etc/debian_version").read_text().strip()
    except OSError:
        debian = ""
    return f"{name} ({debian})" if debian else name or "n/a"


def git_revision(tree: Path) -> str:
    rev = _out(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"])
    if not rev or rev == "n/a":
        return "not a git checkout"
    dirty = _out(["git", "-C", str(tree), "status", "--porcelain", "--", "libvirt_presets", "dnf-plugins"])
    return rev + (" + uncommitted changes in libvirt_presets/ or dnf-plugins/" if dirty else "")


def machine_facts() -> list[tuple[str, str]]:
    dnf_version = _out(["/usr/bin/python3", "-c", "import dnf.const; print(dnf.const.VERSION)"])
    return [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} CPUs (nproc {_out(['nproc'])})"),
        ("memory", _memory()),
        ("OS", _os_release()),
        ("kernel", platform.release()),
        ("dnf", dnf_version),
        ("rpm", _out(["rpm", "--version"])),
        ("systemd", (_out(["systemctl", "--version"]).splitlines() or ["n/a"])[0]),
        ("python", _out(["/usr/bin/python3", "--version"])),
        ("load average at start", " ".join(Path("/proc/loadavg").read_text().split()[:3])),
    ]
