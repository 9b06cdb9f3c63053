"""Hypothesis profiles for the fuzz targets.

``ci`` (the default) is a quick pass for every CI run; ``stress`` is for the
long CI stress job: ``pytest fuzz --hypothesis-profile=stress``.
"""

from hypothesis import HealthCheck, settings

_common = {
    "deadline": None,  # real threads: timing varies with the machine's load
    "suppress_health_check": [HealthCheck.too_slow],
}
settings.register_profile("ci", max_examples=40, **_common)
settings.register_profile("stress", max_examples=2000, **_common)
settings.load_profile("ci")
