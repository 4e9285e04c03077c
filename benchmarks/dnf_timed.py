#!/usr/bin/python3
"""/usr/bin/dnf, plus clocks around dnf's plugin machinery: how long loading the plugins and
running their hooks took inside this very dnf process.  Written as JSON to $BENCH_PLUGIN_TIMES
at exit.  Used for the plugin-on and the plugin-off runs alike.
"""

import atexit
import gc
import json
import os
import resource
import sys
import time

del sys.path[0]  # like /usr/bin/dnf: nothing is imported from the script's own directory
# Where an installed core is found: the RPM puts libvirt_presets/ in site-packages, the last
# entry of sys.path.  PYTHONPATH would instead put the checkout first, and every one of dnf's
# ~700 imports would look there first: 3.7 M instructions that no installed system pays.
if os.environ.get("BENCH_SITE"):
    sys.path.append(os.environ["BENCH_SITE"])

from dnf import plugin  # noqa: E402

spent: dict = {"load": 0.0, "init": 0.0, "hooks": {}, "gc": 0.0}
_gc_started = [0.0]


def _gc_clock(phase: str, info: dict) -> None:
    # Garbage collections are paid wherever they happen to trigger: the plugin's allocations
    # can make dnf's own code pay for a pass over dnf's heap, outside the hook clocks.
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        spent["gc"] += time.perf_counter() - _gc_started[0]


gc.callbacks.append(_gc_clock)


def _timed(key: str, original):
    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            took = time.perf_counter() - start
            if key == "hooks":
                spent["hooks"][args[0]] = spent["hooks"].get(args[0], 0.0) + took
            else:
                spent[key] += took
    return wrapper


plugin.Plugins._load = _timed("load", plugin.Plugins._load)
plugin.Plugins._run_init = _timed("init", plugin.Plugins._run_init)
plugin.Plugins._caller = _timed("hooks", plugin.Plugins._caller)

if os.environ.get("BENCH_MARKS") is not None:  # marked.py: callgrind counts between marks
    import importlib.util

    _spec = importlib.util.spec_from_file_location("bench_marks", os.path.join(os.path.dirname(__file__), "marks.py"))
    _marks = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_marks)
    _marks.install(os.environ["BENCH_MARKS"].split())


@atexit.register
def _write() -> None:
    path = os.environ.get("BENCH_PLUGIN_TIMES")
    if path:
        spent["total"] = spent["load"] + spent["init"] + sum(spent["hooks"].values())
        usage = resource.getrusage(resource.RUSAGE_SELF)  # dnf's own process, not its children
        spent["self_cpu"] = usage.ru_utime + usage.ru_stime
        core = sys.modules.get("libvirt_presets")  # which checkout the plugin really ran
        spent["libvirt_presets"] = os.path.dirname(os.path.dirname(core.__file__)) if core else None
        with open(path, "w") as f:
            json.dump(spent, f)


from dnf.cli import main  # noqa: E402

if os.environ.get("BENCH_CPROFILE"):  # profile this dnf run (sys.path as in a normal run)
    import cProfile

    profiler = cProfile.Profile()
    atexit.register(profiler.dump_stats, os.environ["BENCH_CPROFILE"])
    profiler.enable()
main.user_main(sys.argv[1:], exit_code=True)
