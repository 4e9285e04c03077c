"""Instruction counts per function inside one real dnf run: callgrind dumps its counters at every
*mark*, so the instructions between two marks are one dump file (`marked.py` runs and reads them).

Loaded by `dnf_timed.py` when $BENCH_MARKS is set (never shipped, never imported by the plugin).
A mark is a call of libc's getpid() through ctypes, which neither dnf nor the plugin otherwise
makes: callgrind is run with `--dump-before=ffi_call`. Marks are written:

- around each of dnf's plugin hooks (`hook:pre_transaction>` ... `hook:pre_transaction<`);
- around each function $BENCH_MARKS names (`module.function` or `module.Class.method`, relative to
  libvirt_presets): the module is patched when it is first imported, before any other module
  can take the name with `from .module import function`.

Each mark costs ~20,000 instructions of its own (ctypes), counted in the segment it ends.
"""

import ctypes
import functools
import importlib.abc
import os
import sys

_marker = ctypes.CDLL(None).getpid
_names = open(os.environ.get("BENCH_MARKS_FILE", os.devnull), "a")  # noqa: SIM115 - open for the whole run


def mark(name):
    _names.write(name + "\n")
    _names.flush()
    _marker()


def _wrapped(function, name):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        mark(name + ">")
        try:
            return function(*args, **kwargs)
        finally:
            mark(name + "<")
    return wrapper


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Wraps the named functions of a libvirt_presets module right after it runs."""

    def __init__(self, targets):
        self.targets = {}  # module -> [attribute path]
        for target in targets:
            module, _, attribute = target.partition(".")
            self.targets.setdefault(f"libvirt_presets.{module}", []).append(attribute)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.targets:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader, attributes = spec.loader, self.targets[fullname]
        run = loader.exec_module

        def exec_module(module):
            run(module)
            for attribute in attributes:
                *owners, name = attribute.split(".")
                owner = module
                for part in owners:
                    owner = getattr(owner, part)
                setattr(owner, name, _wrapped(getattr(owner, name), f"{fullname[16:]}.{attribute}"))

        loader.exec_module = exec_module
        return spec


def install(targets):
    from dnf import plugin

    sys.meta_path.insert(0, _PatchOnImport(targets))
    caller = plugin.Plugins._caller

    def hooks(self, method):
        mark(f"hook:{method}>")
        try:
            return caller(self, method)
        finally:
            mark(f"hook:{method}<")

    plugin.Plugins._caller = hooks
    load = plugin.Plugins._load

    def loading(self, *args, **kwargs):
        mark("plugins:load>")
        try:
            return load(self, *args, **kwargs)
        finally:
            mark("plugins:load<")

    plugin.Plugins._load = loading
