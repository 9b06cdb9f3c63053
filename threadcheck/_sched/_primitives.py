"""Locks, conditions, events, semaphores and queues that wait in the scheduler.

Each operation is a scheduling point, and a wait blocks the calling thread in
the scheduler instead of in the OS, so the thread that would end the wait can
run. Timeouts are in virtual seconds. Used by a thread that is not controlled
(say after the exploration, or a thread started before it), an object falls
back to a real lock of its own: best effort, since the two kinds of callers
then do not see each other.

Thread safety: as their ``threading``/``queue`` namesakes. Under the
scheduler only one controlled thread runs at a time, so their state needs no
lock of its own.
"""

from __future__ import annotations

import _thread
import heapq
import queue as _queue
import time as _time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from threadcheck._races import _footprint
from threadcheck._races._clocks import VectorClock, merge, receive, send
from threadcheck._sched._core import ControlledThread, Scheduler
from threadcheck._sched._core import here as _here  # its callers name the result `here`

T = TypeVar("T")
_real_sleep = _time.sleep
_real_monotonic = _time.monotonic


def _changed(obj: Any) -> None:
    """A step changed ``obj``'s state (for DPOR's dependence: see ``_footprint``)."""
    if _footprint.collecting:
        _footprint.writes.add(_key(obj))


def _acquired(obj: Any, changed: bool = True) -> None:
    """``obj`` taken (a lock, a semaphore's unit, a FIFO queue's item), or a set
    event seen (``changed=False``): see ``_footprint.acquired``."""
    if _footprint.collecting:
        _footprint.acquired(_key(obj), changed)


def _taken(obj: Any, deadline: float | None, changed: bool = True) -> None:
    """:func:`_acquired`, for an acquire that would wait for ever (``deadline``
    None). One with a deadline, had it come first, might have timed out instead:
    a plain access then, which the release before it races (DPOR tries both)."""
    if deadline is None:
        _acquired(obj, changed)
    elif changed:
        _changed(obj)
    else:
        _looked_at(obj)


def _released(obj: Any) -> None:
    if _footprint.collecting:
        _footprint.released(_key(obj))


def _key(obj: Any) -> Any:
    return obj._footprint_key


def _looked_at(obj: Any) -> None:
    if _footprint.collecting:
        _footprint.reads.add(_key(obj))


TICK = 1e-6
"""Virtual seconds an event's or a condition's timed wait lasts at least. A
real one that times out at once still takes time, and a deadline loop that
waited until exactly its end (``remaining = end - monotonic(); if remaining <
0: raise``, as ``concurrent.futures.as_completed`` does) must then see the
clock pass it, or it waits 0 seconds for ever. (A lock's, a semaphore's or a
queue's timeout of 0 is a try, as ``blocking=False``: no time passes.)"""


def _deadline(scheduler: Scheduler, timeout: float | None) -> float | None:
    """A lock's or a queue's: a negative timeout (a lock's -1) waits for ever."""
    return None if timeout is None or timeout < 0 else scheduler.now + timeout


def _wait_deadline(
    scheduler: Scheduler, timeout: float | None, least: float = TICK
) -> float | None:
    """An event's or a condition's (``least``: :data:`TICK`), a semaphore's (0):
    a negative timeout only polls."""
    return None if timeout is None else scheduler.now + max(timeout, least)


def _queue_deadline(scheduler: Scheduler, timeout: float | None) -> float | None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")  # as queue.Queue's
    return _deadline(scheduler, timeout)


def _wait(
    scheduler: Scheduler,
    me: ControlledThread,
    waiters: list[ControlledThread],
    why: str,
    deadline: float | None,
    on: Any,
) -> bool:
    """Block until woken (by a change of ``on``); False when ``deadline`` passed first."""
    if deadline is not None and scheduler.now >= deadline:
        return False
    waiters.append(me)
    try:
        scheduler.block(why, deadline, _key(on), waiting_for=on)
    finally:
        if me in waiters:
            waiters.remove(me)
    return deadline is None or scheduler.now < deadline


def _point(obj: Any, scheduler: Scheduler, detail: str) -> None:
    """The scheduling point of an operation on ``obj``; none on a quiet one."""
    if not obj._quiet:
        scheduler.point("sync", detail)


def made_quiet(obj: Any) -> Any:
    """``obj`` (and the lock it made for itself: a Condition's, an RLock's)
    without scheduling points: an installed library's, whose code has none.
    Its waits still wait in the scheduler, so the thread that ends one runs."""
    obj._quiet = True
    inner = getattr(obj, "_lock", None)
    if isinstance(inner, (Lock, RLock)):
        made_quiet(inner)
    return obj


def _wake_all(scheduler: Scheduler, waiters: list[ControlledThread]) -> None:
    for thread in waiters:
        scheduler.wake(thread)
    waiters.clear()


class Lock:
    """``threading.Lock`` under the scheduler."""

    _quiet = False
    waited_as = "lock"
    """What a thread blocked on it waits for, as a deadlock report names it."""

    def __init__(self) -> None:
        self._locked = False
        self.holder: ControlledThread | None = None
        """Who took it, while it is taken under the scheduler: a deadlock report's edge."""
        self._waiters: list[ControlledThread] = []
        self._real = _thread.allocate_lock()
        self._sent: VectorClock | None = None  # for the race detector: see _races._clocks
        _footprint.name_at_creation(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        here = _here()
        if here is None:
            acquired = self._real.acquire(blocking, timeout)
            if acquired:
                receive(self._sent)
            return acquired
        scheduler, me = here
        _point(self, scheduler, "lock.acquire")
        deadline = _deadline(scheduler, timeout) if blocking else scheduler.now
        while self._locked:
            if not _wait(scheduler, me, self._waiters, self.waited_as, deadline, self):
                _looked_at(self)
                return False
        self._locked = True
        self.holder = me
        _taken(self, deadline)
        if _footprint.collecting:
            _footprint.exclusive.add(_key(self))
        receive(self._sent)
        return True

    def release(self) -> None:
        here = _here()
        if here is None:
            self._sent = send()
            self._real.release()
            return
        scheduler, _ = here
        if not self._locked:
            raise RuntimeError("release unlocked lock")
        self._sent = send()
        self._locked = False
        self.holder = None
        if _footprint.collecting and _key(self) in _footprint.exclusive:
            _changed(self)  # taken in this very step: it hands nothing on
        else:
            _released(self)
        _wake_all(scheduler, self._waiters)
        _point(self, scheduler, "lock.release")

    def locked(self) -> bool:
        _looked_at(self)
        return self._locked or self._real.locked()

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        self.__init__()  # type: ignore[misc]


class RLock:
    """``threading.RLock`` under the scheduler."""

    _quiet = False

    def __init__(self) -> None:
        self._owner: object = None
        self._count = 0
        self._lock = Lock()

    def _me(self) -> object:
        """Its owner's name: a controlled thread, or an uncontrolled one's ident
        (an int: compared with ==, as each get_ident() call makes a new one)."""
        here = _here()
        return _thread.get_ident() if here is None else here[1]

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = self._me()
        if self._owner == me:
            self._count += 1
            return True
        if not self._lock.acquire(blocking, timeout):
            return False
        self._owner, self._count = me, 1
        return True

    def release(self) -> None:
        if self._owner != self._me():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._owner = None
            self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()

    # Condition's protocol for locks it does not own outright.
    def _is_owned(self) -> bool:
        return self._owner == self._me()

    def _release_save(self) -> tuple[object, int]:
        state = (self._owner, self._count)
        self._owner, self._count = None, 0
        self._lock.release()
        return state

    def _acquire_restore(self, state: tuple[object, int]) -> None:
        self._lock.acquire()
        self._owner, self._count = state


class Condition:
    """``threading.Condition`` under the scheduler."""

    _quiet = False

    def __init__(self, lock: Any = None) -> None:
        self._lock = RLock() if lock is None else lock
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        self._waiters: list[ControlledThread] = []
        _footprint.name_at_creation(self)

    def __enter__(self) -> bool:
        return bool(self._lock.__enter__())

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)

    def _is_owned(self) -> bool:
        lock: Any = self._lock
        return bool(lock._is_owned() if hasattr(lock, "_is_owned") else lock.locked())

    def _release_save(self) -> object:
        lock: Any = self._lock
        if hasattr(lock, "_release_save"):
            return lock._release_save()
        lock.release()
        return None

    def _acquire_restore(self, state: object) -> None:
        lock: Any = self._lock
        if hasattr(lock, "_acquire_restore"):
            lock._acquire_restore(state)
        else:
            lock.acquire()

    def wait(self, timeout: float | None = None) -> bool:
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        here = _here()
        if here is None:
            raise RuntimeError("a scheduled Condition waited on outside the scheduler")
        scheduler, me = here
        deadline = _wait_deadline(scheduler, timeout)
        # A waiter before the lock is released: releasing is a scheduling
        # point, and a notify made there must not be lost.
        self._waiters.append(me)
        _changed(self)
        state = self._release_save()
        try:
            if me in self._waiters and (deadline is None or scheduler.now < deadline):
                scheduler.block("condition", deadline, _key(self))
            return me not in self._waiters
        finally:
            if me in self._waiters:
                self._waiters.remove(me)
            self._acquire_restore(state)

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        here = _here()
        deadline = None if here is None else _wait_deadline(here[0], timeout)
        result = predicate()
        while not result:
            if deadline is not None and here is not None:
                remaining = deadline - here[0].now
                if remaining <= 0:
                    break
                self.wait(remaining)
            else:
                self.wait()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        here = _here()
        _changed(self)
        woken, self._waiters[:n] = self._waiters[:n], []
        for thread in woken:
            if here is not None:
                here[0].wake(thread)

    def notify_all(self) -> None:
        self.notify(len(self._waiters))

    notifyAll = notify_all  # noqa: N815 - threading's old name


class Event:
    """``threading.Event`` under the scheduler."""

    _quiet = False

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[ControlledThread] = []
        self._sent: VectorClock | None = None
        _footprint.name_at_creation(self)

    def is_set(self) -> bool:
        _looked_at(self)
        return self._received(self._flag)  # True: set() happened before

    isSet = is_set  # noqa: N815

    def set(self) -> None:
        here = _here()
        self._sent = merge(self._sent, send())
        self._flag = True
        _released(self)
        if here is not None:
            _wake_all(here[0], self._waiters)
            _point(self, here[0], "event.set")

    def clear(self) -> None:
        _changed(self)
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        here = _here()
        if here is None:
            return self._real_wait(timeout)
        scheduler, me = here
        _point(self, scheduler, "event.wait")
        deadline = _wait_deadline(scheduler, timeout)
        while not self._flag:
            if not _wait(scheduler, me, self._waiters, "event", deadline, self):
                break
        if self._flag:
            _taken(self, deadline, changed=False)
        else:
            _looked_at(self)
        return self._received(self._flag)

    def _received(self, flag: bool) -> bool:
        if flag:
            receive(self._sent)
        return flag

    def _real_wait(self, timeout: float | None) -> bool:
        # Outside the scheduler nobody can wake us through it: poll.
        end = None if timeout is None else _real_monotonic() + timeout
        while not self._flag and (end is None or _real_monotonic() < end):
            _real_sleep(0.001)
        return self._received(self._flag)


class Semaphore:
    """``threading.Semaphore`` under the scheduler."""

    _quiet = False

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._value = value
        self._waiters: list[ControlledThread] = []
        self._sent: VectorClock | None = None
        _footprint.name_at_creation(self)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        here = _here()
        if here is None:
            raise RuntimeError("a scheduled Semaphore acquired outside the scheduler")
        scheduler, me = here
        _point(self, scheduler, "semaphore.acquire")
        deadline = _wait_deadline(scheduler, timeout, 0.0) if blocking else scheduler.now
        while self._value == 0:
            if not _wait(scheduler, me, self._waiters, "semaphore", deadline, self):
                _looked_at(self)
                return False
        _taken(self, deadline)
        self._value -= 1
        receive(self._sent)
        return True

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        self._sent = merge(self._sent, send())
        self._value += n
        _released(self)
        here = _here()
        if here is not None:
            _wake_all(here[0], self._waiters)
            _point(self, here[0], "semaphore.release")

    def __exit__(self, *exc: object) -> None:
        self.release()


class BoundedSemaphore(Semaphore):
    """``threading.BoundedSemaphore`` under the scheduler."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial = value

    def release(self, n: int = 1) -> None:
        if self._value + n > self._initial:
            raise ValueError("Semaphore released too many times")
        super().release(n)


class Queue(Generic[T]):
    """``queue.Queue`` under the scheduler (``LifoQueue`` and ``PriorityQueue`` below)."""

    _quiet = False

    _fifo = True
    """A get takes what was put first: no put after it could change what it takes."""

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._init(maxsize)
        self._getters: list[ControlledThread] = []
        self._putters: list[ControlledThread] = []
        self._joiners: list[ControlledThread] = []
        self.unfinished_tasks = 0
        # What every put so far saw, for whoever gets (more than its own item's
        # sender: a race hidden, never one made up).
        self._sent: VectorClock | None = None
        self._done_sent: VectorClock | None = None  # every task_done's, for join
        _footprint.name_at_creation(self)

    def _init(self, maxsize: int) -> None:
        self.queue: Any = deque()

    def _put(self, item: T) -> None:
        self.queue.append(item)

    def _get(self) -> T:
        return self.queue.popleft()  # type: ignore[no-any-return]

    def qsize(self) -> int:
        _looked_at(self)
        return len(self.queue)

    def _has_items(self) -> bool:
        # Not qsize(): waiting is no look at the queue (see _footprint); what ends it is.
        return bool(self.queue)

    def empty(self) -> bool:
        return not self.qsize()

    def full(self) -> bool:
        return 0 < self.maxsize <= self.qsize()

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        here = _here()
        if here is None:
            self._unscheduled(self.full(), block, _queue.Full)
        else:
            scheduler, me = here
            _point(self, scheduler, "queue.put")
            deadline = _queue_deadline(scheduler, timeout) if block else scheduler.now
            while 0 < self.maxsize <= len(self.queue):
                if not _wait(scheduler, me, self._putters, "queue.put (full)", deadline, self):
                    raise _queue.Full
            _released(self) if self._fifo else _changed(self)
            _wake_all(scheduler, self._getters)
        self._sent = merge(self._sent, send())
        self._put(item)
        self.unfinished_tasks += 1

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        here = _here()
        if here is None:
            self._unscheduled(not self.qsize(), block, _queue.Empty)
        else:
            scheduler, me = here
            _point(self, scheduler, "queue.get")
            deadline = _queue_deadline(scheduler, timeout) if block else scheduler.now
            while not self._has_items():
                if not _wait(scheduler, me, self._getters, "queue.get (empty)", deadline, self):
                    _looked_at(self)
                    raise _queue.Empty
            _taken(self, deadline) if self._fifo else _changed(self)
            _wake_all(scheduler, self._putters)
        receive(self._sent)
        return self._get()

    @staticmethod
    def _unscheduled(must_wait: bool, block: bool, error: type[Exception]) -> None:
        # Outside the scheduler nobody could end the wait through it.
        if must_wait and block:
            raise RuntimeError("a scheduled queue would block outside the scheduler")
        if must_wait:
            raise error

    def put_nowait(self, item: T) -> None:
        self.put(item, block=False)

    def get_nowait(self) -> T:
        return self.get(block=False)

    def task_done(self) -> None:
        if self.unfinished_tasks <= 0:
            raise ValueError("task_done() called too many times")
        self.unfinished_tasks -= 1
        # What each worker did with its item happens before join() returns.
        self._done_sent = merge(self._done_sent, send())
        _changed(self)
        here = _here()
        if self.unfinished_tasks == 0 and here is not None:
            _wake_all(here[0], self._joiners)

    def join(self) -> None:
        here = _here()
        if here is None:
            self._unscheduled(bool(self.unfinished_tasks), True, RuntimeError)
            return
        scheduler, me = here
        while self.unfinished_tasks:
            _wait(scheduler, me, self._joiners, "queue.join", None, self)
        _looked_at(self)
        receive(self._done_sent)


class LifoQueue(Queue[T]):
    _fifo = False

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _get(self) -> T:
        return self.queue.pop()  # type: ignore[no-any-return]


class PriorityQueue(Queue[T]):
    _fifo = False

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _put(self, item: T) -> None:
        heapq.heappush(self.queue, item)

    def _get(self) -> T:
        return heapq.heappop(self.queue)  # type: ignore[no-any-return]


class SimpleQueue(Queue[T]):
    """``queue.SimpleQueue`` under the scheduler."""

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        if _here is None:  # type: ignore[comparison-overlap]
            # The interpreter's exit cleared this module before it collected an
            # executor a program kept: its weakref callback wakes no one now.
            return
        super().put(item)


def sleep(seconds: float) -> None:
    """``time.sleep`` in virtual time for a controlled thread."""
    here = _here()
    if here is None:
        _real_sleep(seconds)
        return
    scheduler, _ = here
    scheduler.point("sync", "sleep")
    if seconds > 0:
        scheduler.block("sleep", scheduler.now + seconds)
