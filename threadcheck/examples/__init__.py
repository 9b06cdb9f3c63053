"""Bundled example programs, runnable with ``threadcheck run -m threadcheck.examples.NAME``.

``correct`` follows the rules; every one in ``BUGGY`` has a thread-safety bug
seen in real Twisted programs. Each one in ``RACES`` has an interleaving bug
for ``threadcheck explore -m threadcheck.examples.NAME`` to find, and a fixed
twin, ``NAME_fixed``, that explores clean. Each one in ``DATA_RACES`` has
state two threads update unsynchronised, which ``threadcheck run --races``
reports on every run. Each imports the reactor only
inside ``main()``, so importing a module here never installs a reactor.
"""

CORRECT = ("correct",)
BUGGY = (
    "calllater_from_worker",
    "write_from_thread",
    "stop_from_thread",
    "blocking_call_in_reactor",
)
RACES = ("race_lost_update",)
DATA_RACES = ("data_race_counter",)
