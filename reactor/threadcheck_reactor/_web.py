"""twisted.web requests, checked under their own names (``request.write``...).

A request belongs to the reactor thread that parsed it: writing, finishing or
setting headers from a worker races the channel (twisted#5957:
``request.notifyFinish()`` in a worker). Reading what was received
(``getHeader``, ``args``) is left alone: nothing changes it once the request
is handed to the resource.

Checked only when ``twisted.web`` is imported by the time the reactor runs;
importing it here would cost every program that does not serve HTTP.

Thread safety: Twisted's requests have none; the checks run in any thread.
"""

from __future__ import annotations

import sys

from threadcheck_reactor._running import Patch, checked_methods

REQUEST_APIS = (
    "finish",
    "notifyFinish",
    "setResponseCode",
    "setHeader",
    "addCookie",
    "redirect",
    "setLastModified",
    "setETag",
    "setHost",
    "registerProducer",
    "unregisterProducer",
    "loseConnection",
    "processingFailed",
)


APIS = tuple(f"request.{name}" for name in ("write", *REQUEST_APIS))
"""Every name a request violation can carry."""


def patches() -> list[Patch]:
    """The request checks, for :func:`threadcheck_reactor._running.register`."""
    # twisted.web.server.Request's write and finish end in these: one check each.
    request = getattr(sys.modules.get("twisted.web.http"), "Request", None)
    if not isinstance(request, type):
        return []
    return checked_methods(request, "request", ("write", *REQUEST_APIS))
