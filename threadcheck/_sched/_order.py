"""Creation order where the standard library orders by identity.

``concurrent.futures`` keeps futures and worker threads in sets and takes
futures' locks sorted by ``id``: orders that follow memory addresses, which
differ from process to process. Each would send a replay in a fresh process
down other scheduling points. During a schedule, a future made in a
controlled thread hashes by its creation index (counted from 0 in each
schedule), the futures' locks are taken in that order, and an executor's
thread set iterates in insertion order.

Thread safety: futures are made and compared by controlled threads, one at a
time; :func:`restart` is called by the exploring thread as a schedule starts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, MutableSet
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import _base as futures_base
from typing import Any, TypeVar

from threadcheck._sched._core import here

T = TypeVar("T")

_created = itertools.count()


def restart() -> None:
    """As a schedule starts: futures are counted from 0 again."""
    global _created
    _created = itertools.count()


class OrderedFuture(Future[Any]):
    """A future made during a schedule: hashed by when it was made."""

    _threadcheck_order = 0

    def __hash__(self) -> int:
        return self._threadcheck_order


def replacements() -> list[tuple[Any, str, Any]]:
    """(target, name, replacement) for :class:`~threadcheck._sched._patch.Patches`."""
    return [
        (Future, "__init__", _ordered_init(Future.__init__)),
        (futures_base._AcquireFutures, "__init__", _acquire_in_order),
        (ThreadPoolExecutor, "__init__", _ordered_threads(ThreadPoolExecutor.__init__)),
    ]


def _ordered_init(init: Callable[..., None]) -> Callable[..., None]:
    def init_in_order(self: Future[Any]) -> None:
        init(self)
        if type(self) is Future and here() is not None:
            self.__class__ = OrderedFuture
            self._threadcheck_order = next(_created)  # type: ignore[attr-defined]

    return init_in_order


def _acquire_in_order(self: Any, futures: Iterable[Future[Any]]) -> None:
    self.futures = sorted(futures, key=_order_key)


def _order_key(future: Future[Any]) -> tuple[int, int]:
    if isinstance(future, OrderedFuture):
        return 0, future._threadcheck_order
    return 1, id(future)


def _ordered_threads(init: Callable[..., None]) -> Callable[..., None]:
    def init_with_ordered_threads(self: ThreadPoolExecutor, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if here() is not None:
            self._threads = InsertionOrdered()  # type: ignore[assignment]

    return init_with_ordered_threads


class InsertionOrdered(MutableSet[T]):
    """A set that iterates in the order its items were added."""

    def __init__(self) -> None:
        self._items: dict[T, None] = {}

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        self._items[item] = None

    def discard(self, item: T) -> None:
        self._items.pop(item, None)
