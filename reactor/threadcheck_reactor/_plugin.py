"""What ``--reactor=threadcheck`` runs: configured by the environment, reports at exit.

``THREADCHECK_MODE`` picks the mode (raise, record, warn; default record) and
``THREADCHECK_JSON`` names a file for the JSON report. The human-readable
report goes to stderr at exit when anything was found.
"""

from __future__ import annotations

import atexit
import os
import sys

import threadcheck_reactor
from threadcheck import _report


def install() -> None:
    mode = os.environ.get("THREADCHECK_MODE", "record")
    json_path = os.environ.get("THREADCHECK_JSON") or None
    reactor = threadcheck_reactor.install(mode)
    atexit.register(_report.finish, reactor.threadcheck, json_path, sys.stderr)
