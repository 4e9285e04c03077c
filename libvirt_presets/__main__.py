"""`python3 -m libvirt_presets`: the `libvirt-units` command (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
