"""Source-DPOR with sleep sets (Abdulla et al., POPL'14), over reported steps.

The search core of the ``dpor`` strategy, kept apart from the scheduler so it
can be checked against a brute-force enumeration. An execution is a sequence
of :class:`Event`: a thread's run from one scheduling decision to the next,
with its *footprint* (what it read and wrote) and the threads that could have
run instead. Two events conflict when they are of the same thread, or touch a
common location and one of them writes it.

After each execution, every race (two conflicting events of different
threads, ordered by nothing in between) asks for the reversed order to be
explored: some *initial* of what
would run instead is added to the backtrack set at the point before the first
event, unless one is there already (source sets). Sleep sets prune what an
explored sibling already covers. Every equivalence class of executions (same
order of conflicting events) is then explored at least once, which
``tests/test_sched_dpor.py`` checks against a brute-force enumeration; the
search is exhausted when no backtrack point is left.

Thread safety: one search is driven by one thread (the one holding the turn).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field

EVERYTHING: Hashable = ("*",)
"""A location every footprint touches: an event whose effects are unknown
(library code, time passing) conflicts with every other."""


class Event:
    """One step: its thread and footprint. Built once per step and compared with
    many others (``conflict``), so it is a slotted class that also keeps what
    every comparison needs: everything it touches, and whether that is all."""

    __slots__ = (
        "acquires",
        "exclusive",
        "reads",
        "releases",
        "tid",
        "touches",
        "waits",
        "wild",
        "writes",
    )

    def __init__(
        self,
        tid: int,
        reads: frozenset[Hashable] = frozenset(),
        writes: frozenset[Hashable] = frozenset(),
        acquires: frozenset[Hashable] = frozenset(),
        releases: frozenset[Hashable] = frozenset(),
        exclusive: frozenset[Hashable] = frozenset(),
        waits: frozenset[Hashable] = frozenset(),
    ) -> None:
        self.tid = tid
        self.reads = reads
        self.writes = writes
        """Locations written, and the synchronisation objects it operated on."""
        self.acquires = acquires
        """What it had to wait for (a lock taken): no event that releases one of
        these (and did not take it first itself) could have let it run first."""
        self.releases = releases
        """What it made available: a lock it held before it (not one it took and
        let go within it), an item put, an event set, a thread ended."""
        self.exclusive = exclusive
        """The locks among ``acquires``: held until released, by one thread at a time."""
        self.waits = waits
        """What it ended blocked on (it recorded no look at it: a wait is none).
        A sleeping thread whose step blocked wakes in the sleep set when one of
        these changes: from there its step would not block, and it must be free
        to run, or every schedule that follows ends with it asleep, redundant."""
        self.touches = reads | writes
        self.wild = EVERYTHING in writes

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={set(getattr(self, name))}"
            for name in ("reads", "writes", "acquires", "releases", "exclusive", "waits")
            if getattr(self, name)
        )
        return f"Event({self.tid}{', ' if fields else ''}{fields})"


def conflict(a: Event, b: Event) -> bool:
    """Whether swapping ``a`` and ``b`` may change the outcome."""
    return (
        a.tid == b.tid
        or a.wild
        or b.wild
        or not a.writes.isdisjoint(b.touches)
        or not b.writes.isdisjoint(a.reads)
    )


SHORT_SCAN = 96
"""Backward scans from up to this depth walk every event (a test's scenario:
~50 steps); deeper ones visit only the unordered threads' events."""

Clock = dict[int, int]
"""A vector clock: for each thread, how many of its events happen before (or are)
an event."""


@dataclass
class _Node:
    """The state before one event of the current execution."""

    enabled: tuple[int, ...]
    sleep: dict[int, Event]
    """Threads whose next event here is covered by an explored sibling."""
    backtrack: set[int] = field(default_factory=set)
    done: dict[int, Event] = field(default_factory=dict)
    """The event each explored choice ran from here."""
    taken: Event | None = None
    clock: Clock = field(default_factory=dict)
    """The taken event's vector clock (it included)."""
    pending: Event | None = None
    """What an enabled choice that ran no step would do here (time passing: the
    waits it would end). A taken step that conflicts with it (ends such a wait
    first) races with it: it is tried here too. Time passing may never run in
    this execution, so no race with a step of it would show."""
    guides: dict[int, list[int]] = field(default_factory=dict)
    """For a thread put in the backtrack set by a race: the threads of the rest of
    that race's reversed order, followed when it runs from here (as optimal
    DPOR's wakeup trees do), so that the execution reaches the reversed race
    rather than an order a sleeping thread already covers."""


class SourceDpor:
    """The search over executions reported step by step.

    Each execution: :meth:`begin`, then for every step :meth:`choose` (which
    thread runs) and :meth:`ran` (what it did), then :meth:`end`.
    """

    def __init__(self) -> None:
        self._nodes: list[_Node] = []
        self._prefix: list[int] = []
        self._depth = 0
        self.executions = 0
        self.redundant = 0
        """Executions that reached a state where every enabled thread sleeps."""
        self._blocked = False
        self._exhausted = False
        self._fresh = 0
        """The first event this execution ran past its replayed prefix: races
        between earlier events were analysed when they first ran."""
        self._guide: list[int] = []
        self.diverged = False
        """An execution did not repeat its prefix (the program keeps state between
        runs, or reads the outside world): the search goes on, but is no proof."""
        self._adrift: int | None = None
        """Where this execution left its prefix: from there on nothing is recorded."""
        self._events: dict[int, list[int]] = {}
        """Each thread's events in this execution (their depths, in order): a
        backward scan visits only the threads not yet in its clock, and stops
        once none is left. A thread that spins alone for thousands of steps
        would otherwise make every scan walk all of them (a 20,000-step livelock
        took minutes to report)."""

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def begin(self) -> bool:
        """Start the next execution; False when every class was explored."""
        if self._exhausted:
            return False
        self._depth = 0
        self._blocked = False
        self._adrift = None
        self._fresh = max(0, len(self._prefix) - 1)
        self._events = {}
        for k, node in enumerate(self._nodes[: self._fresh]):
            if node.taken is not None:
                self._events.setdefault(node.taken.tid, []).append(k)
        return True

    def choose(self, enabled: Sequence[int], pending: Event | None = None) -> int:
        """The thread to run at the current step, ``enabled`` the threads that can;
        ``pending``: what one of them (time passing) would do, were it chosen."""
        depth = self._depth
        if self._adrift is not None:
            return enabled[0]
        if depth < len(self._prefix):
            chosen = self._prefix[depth]
            if chosen not in enabled:  # the program did not repeat itself
                self.diverged = True
                self._adrift = depth
                return enabled[0]
            return chosen
        node = self._node_here(tuple(enabled))
        node.pending = pending
        awake = [tid for tid in enabled if tid not in node.sleep]
        if not awake:
            self._blocked = True  # what follows repeats an explored class
            return enabled[0]
        chosen = awake[0]
        if self._guide:
            wanted = self._guide.pop(0)
            if wanted in awake:
                chosen = wanted
            else:
                self._guide.clear()  # it went elsewhere: the search's own order from here
        node.backtrack.add(chosen)
        return chosen

    def ran(self, event: Event) -> None:
        """The chosen thread's step, with its footprint."""
        if self._adrift is not None:
            return
        node = self._nodes[self._depth]
        if self._depth >= self._fresh or node.taken is None:
            # Replayed steps are the ones recorded (else the run diverged): their
            # clocks stand; only a fresh step's is computed.
            node.clock = self._clock_of(event, self._depth)
            self._events.setdefault(event.tid, []).append(self._depth)
            pending = node.pending
            if (
                pending is not None
                and pending.tid not in node.sleep
                and pending.tid != event.tid
                and conflict(pending, event)
            ):
                node.backtrack.add(pending.tid)
        node.taken = event
        node.done.setdefault(event.tid, event)
        self._depth += 1

    def end(self, pending: Sequence[Event] = ()) -> None:
        """The execution is over: its races ask for new orders; pick the next.

        ``pending``: the next step of each thread that could not run to its end
        (a deadlock): it races with what blocked it, as a step that ran would.
        """
        self.executions += 1
        self.redundant += self._blocked
        if self._adrift is not None:
            # What ran past the place it diverged is no execution of the tree:
            # the obligations from there on are dropped, the earlier ones go on.
            del self._nodes[self._adrift :]
            self._next_prefix()
            return
        del self._nodes[self._depth :]  # a replay that ended sooner
        for j in range(min(self._fresh, len(self._nodes)), len(self._nodes)):
            self._backtrack_for(j, self._nodes[j].taken, self._nodes[j].clock)
        for step in pending:
            self._backtrack_for(len(self._nodes), step, self._clock_of(step, len(self._nodes)))
        self._next_prefix()

    # -- internals ---------------------------------------------------------------

    def _node_here(self, enabled: tuple[int, ...]) -> _Node:
        depth = self._depth
        if depth < len(self._nodes):
            return self._nodes[depth]
        sleep: dict[int, Event] = {}
        if depth > 0:
            parent = self._nodes[depth - 1]
            taken = parent.taken
            assert taken is not None
            candidates = {**parent.sleep, **parent.done}
            sleep = {
                tid: event
                for tid, event in candidates.items()
                if tid != taken.tid
                and not conflict(event, taken)
                and event.waits.isdisjoint(taken.writes)
            }
        node = _Node(enabled, sleep)
        self._nodes.append(node)
        return node

    def _event(self, k: int) -> Event:
        taken = self._nodes[k].taken
        assert taken is not None
        return taken

    def _clock_of(self, event: Event, depth: int) -> Clock:
        """The vector clock of ``event`` run after the first ``depth`` events."""
        # Latest first: an event already in the clock's past brings nothing new
        # (its clock is below the one that brought it), and needs no comparison.
        # conflict() inlined: this loop and _races' are most of the search's time.
        clock: Clock = {}
        nodes = self._nodes
        unknown = self._threads_before(depth)
        me, wild, writes, touches = event.tid, event.wild, event.writes, event.touches
        for k in self._backwards(depth, unknown):
            node = nodes[k]
            earlier = node.taken
            if earlier is None:
                raise AssertionError("dpor: an event before this one did not run")
            tid = earlier.tid
            if clock.get(tid, 0) >= node.clock[tid]:
                unknown.discard(tid)  # and so are its earlier events
                continue
            if tid != me and not (
                wild
                or earlier.wild
                or not earlier.writes.isdisjoint(touches)
                or not writes.isdisjoint(earlier.reads)
            ):
                continue
            for other, count in node.clock.items():
                if clock.get(other, 0) < count:
                    clock[other] = count
            unknown.discard(tid)
        clock[me] = clock.get(me, 0) + 1  # its thread's latest event is in it, or none ran
        return clock

    def _threads_before(self, depth: int) -> set[int]:
        """The threads with an event among the first ``depth``."""
        return {tid for tid, events in self._events.items() if events[0] < depth}

    def _backwards(self, depth: int, unknown: set[int]) -> Iterator[int]:
        """The events before ``depth`` of the threads in ``unknown``, latest first.
        Once the caller takes a thread out of ``unknown`` (its earlier events are
        in the clock), none of its earlier events comes."""
        nodes = self._nodes
        if depth <= SHORT_SCAN:  # walked, cheaper than the heap's set-up
            for k in range(depth - 1, -1, -1):
                if not unknown:
                    return
                taken = nodes[k].taken
                if taken is None or taken.tid in unknown:
                    yield k
            return
        heap = []
        for tid in unknown:
            events = self._events[tid]
            at = bisect.bisect_left(events, depth) - 1
            if at >= 0:
                heap.append((-events[at], tid, at))
        heapq.heapify(heap)
        while heap:
            k, tid, at = heapq.heappop(heap)
            if tid not in unknown:
                continue
            yield -k
            if tid in unknown and at > 0:
                heapq.heappush(heap, (-self._events[tid][at - 1], tid, at - 1))

    def _backtrack_for(self, j: int, later: Event | None, clock: Clock) -> None:
        """Every race of event ``j`` asks, at the node before its partner, for a
        thread that starts the reversed order."""
        assert later is not None
        for i in self._races(j, later):
            node = self._nodes[i]
            initials, order = self._initials(i, j, later, clock)
            initials &= set(node.enabled)
            if node.backtrack & initials:
                continue
            if not initials:
                # No initial can run here (it waited, or footprints missed a
                # conflict): every thread that can is tried, to stay sound.
                node.backtrack.update(node.enabled)
                continue
            first = min(initials)
            node.backtrack.add(first)
            order.remove(first)  # its first event, which nothing in the order precedes
            node.guides.setdefault(first, order)

    def _races(self, j: int, later: Event) -> Iterator[int]:
        """The events ``i < j`` that race with ``later`` (event ``j``): conflicting,
        of another thread, ordered before it by no event in between. A release
        that it waited for (it acquires what ``i`` released) is no race and
        orders nothing: the acquire before that release is the one that races.
        Nor is what another thread did holding a lock ``later`` takes: ``later``
        could not run inside that critical section, only before its acquire."""
        ordered: Clock = {}
        held = self._held_before(j, later)
        nodes = self._nodes
        unknown = self._threads_before(j)
        me, wild, writes, touches = later.tid, later.wild, later.writes, later.touches
        for i in self._backwards(j, unknown):
            node = nodes[i]
            earlier = node.taken
            if earlier is None:
                raise AssertionError("dpor: an event before this one did not run")
            tid = earlier.tid
            if ordered.get(tid, 0) >= node.clock[tid]:
                unknown.discard(tid)  # and so are its earlier events
                continue  # happens before an event that conflicts with ``later``
            if i in held:
                continue
            if tid != me:
                if not (  # conflict(), inlined
                    wild
                    or earlier.wild
                    or not earlier.writes.isdisjoint(touches)
                    or not writes.isdisjoint(earlier.reads)
                ):
                    continue
                if not later.acquires.isdisjoint(_handed_on(earlier)):
                    continue  # never enabled together: it waited for i
                yield i
            for other, count in node.clock.items():
                if ordered.get(other, 0) < count:
                    ordered[other] = count
            unknown.discard(tid)

    def _held_before(self, j: int, later: Event) -> set[int]:
        """The events of the last critical sections, before ``j``, of the locks
        ``later`` takes (from the event after the acquire to the release). A
        step that let the lock go and took it again at once continues the hold:
        nobody could take it in between."""
        held: set[int] = set()
        for lock in later.exclusive:
            holder: int | None = None
            for i in range(j - 1, -1, -1):
                event = self._event(i)
                if holder is None:
                    if event.tid != later.tid and lock in event.releases:
                        holder = event.tid
                        held.add(i)
                elif event.tid == holder:
                    if lock in event.exclusive and lock not in event.releases:
                        break  # the acquire that began the hold: it races
                    held.add(i)
        return held

    def _initials(self, i: int, j: int, later: Event, clock: Clock) -> tuple[set[int], list[int]]:
        """The threads that can start ``v``, and ``v``'s threads in order: ``v``
        is the events between ``i`` and ``j`` not ordered after ``i``, then
        ``later`` (what runs instead of ``i``'s event). Each thread's first event
        in ``v`` starts it unless another event of ``v`` happens before it."""
        origin = self._event(i).tid
        mark = self._nodes[i].clock[origin]
        firsts: dict[int, tuple[int, Clock]] = {}  # thread -> (its count, clock) at its first
        initials: set[int] = set()
        order: list[int] = []
        for k in range(i + 1, j):
            node = self._nodes[k]
            if node.clock.get(origin, 0) >= mark:
                continue  # after i
            order.append(self._event(k).tid)
            self._consider(order[-1], node.clock, firsts, initials)
        self._consider(later.tid, clock, firsts, initials)
        order.append(later.tid)
        return initials, order

    @staticmethod
    def _consider(
        tid: int, clock: Clock, firsts: dict[int, tuple[int, Clock]], initials: set[int]
    ) -> None:
        if tid in firsts:
            return
        if not any(clock.get(other, 0) >= count for other, (count, _) in firsts.items()):
            initials.add(tid)
        firsts[tid] = (clock[tid], clock)

    def _next_prefix(self) -> None:
        while self._nodes:
            node = self._nodes[-1]
            left = [t for t in node.backtrack if t not in node.done and t not in node.sleep]
            if left:
                first = min(left)
                self._prefix = [n.taken.tid for n in self._nodes[:-1] if n.taken] + [first]
                self._guide = list(node.guides.get(first, ()))
                node.taken = None
                return
            self._nodes.pop()
        self._exhausted = True


def _handed_on(event: Event) -> frozenset[Hashable]:
    """What ``event`` released for good: not what it took back (a queue it put
    to after getting from it), but a lock it let go of and took again."""
    return event.releases - (event.acquires - event.exclusive)
