"""Hypothesis profiles for every property test of the suite.

`ci` (the default): derandomised, so a CI run is reproducible and a failure shows again on the
next run; 1,000 examples for each property that does not set its own count. `long`: 20,000
random examples each, for a local soak (`HYPOTHESIS_PROFILE=long`). `quick`: 50 derandomised
examples, while editing (`HYPOTHESIS_PROFILE=quick`). A test's own
`@settings(max_examples=...)` wins over both.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"
# a busy shared test machine is no reason to fail: no deadline, no too_slow
_QUIET = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}

settings.register_profile("ci", max_examples=1000, derandomize=True, print_blob=True, **_QUIET)
settings.register_profile("long", max_examples=20000, derandomize=False, print_blob=True, **_QUIET)
settings.register_profile("quick", max_examples=50, derandomize=True, print_blob=True, **_QUIET)
settings.load_profile(os.environ.get(PROFILE_ENV, "ci"))
