"""A happens-before data-race detector for user code (``--races``).

Layout, bottom up:

* :mod:`._clocks`: each thread's vector clock, and the hand-offs (send a
  snapshot, receive it) every synchronisation edge is made of.
* :mod:`._shadow`: FastTrack's per-location state, and the check that finds
  two conflicting accesses no edge orders.
* :mod:`._access`: what rewritten user code calls at each access.
* :mod:`._rewrite` and :mod:`._hook`: the import hook that rewrites user
  modules' code to call it (as pytest rewrites asserts); :mod:`._inplace`
  does it to a module imported before detection started.
* :mod:`._edges`: the standard library's synchronisation, made to send and
  receive (locks, thread start and join, ``SimpleQueue``).
* :mod:`._found`: a race as a :class:`~threadcheck._violation.Violation`.

:mod:`._detector` switches it all on and off. The reactor's own hand-offs
(``callFromThread``, the thread pool) are edges the reactor package adds with
:func:`._clocks.send`/:func:`._clocks.receive` (``threadcheck_reactor._race_edges``,
passed to :func:`._detector.start`): this package knows nothing of Twisted.
"""
