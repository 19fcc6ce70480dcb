"""
The one thread a durable store runs its SQL on (SQLite's file, PostgreSQL's
connections), never the reactor thread.

Reads and writes run in the order they were submitted: a read never sees
less than a write whose Deferred already fired. Writes that queue up while a
transaction is in progress are handed to the session together (group
commit; the session gives each its own savepoint), and their Deferreds
fire on the reactor thread in commit order, with one wake-up of the
reactor per batch.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Protocol, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

T = TypeVar("T")

#: Writes committed in one transaction at most.
MAX_BATCH = 512

_STOP = object()


class Session(Protocol):
    """What a store's database is to the worker thread (made, used and closed on that thread)."""

    def read(self, function: Callable[..., Any]) -> object:
        """Run the read C{function}; its result, or raise."""

    def commit(self, functions: list[Callable[..., Any]]) -> list[object]:
        """Run the writes in one transaction; each one's result or L{Failure}, in order."""

    def close(self) -> None:
        """Release the database."""


class StoreWorker:
    """
    The thread that owns a store's L{Session}. C{submit} queues a function
    for the session; consecutive writes are batched.
    """

    def __init__(self, reactor: IReactorFromThreads, connect: Callable[[], Session], name: str) -> None:
        self._reactor = reactor
        self._connect = connect
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._ready: defer.Deferred[None] = defer.Deferred()
        self._stopped: defer.Deferred[None] = defer.Deferred()

    def start(self) -> defer.Deferred[None]:
        """Start the thread; fires once the session is made (or with why not)."""
        self._thread.start()
        return self._ready

    def stop(self) -> defer.Deferred[None]:
        """Finish what was submitted, close the session; fires when the thread is done."""
        self._queue.put(_STOP)
        return self._stopped

    def submit(self, function: Callable[..., T], write: bool) -> defer.Deferred[T]:
        d: defer.Deferred[T] = defer.Deferred()
        self._queue.put((function, write, d))
        return d

    def _deliver(self, d: defer.Deferred[Any], result: object) -> None:
        if isinstance(result, Failure):
            self._reactor.callFromThread(d.errback, result)
        else:
            self._reactor.callFromThread(d.callback, result)

    def _run(self) -> None:
        try:
            session = self._connect()
        except BaseException:
            self._deliver(self._ready, Failure())
            self._deliver(self._stopped, None)  # a stop() while connecting fires too
            return
        self._deliver(self._ready, None)
        pending = None
        try:
            while True:
                item = pending if pending is not None else self._queue.get()
                pending = None
                if item is _STOP:
                    break
                function, write, d = item
                if not write:
                    try:
                        self._deliver(d, session.read(function))
                    except BaseException:
                        self._deliver(d, Failure())
                    # Not kept until the next request: a load's Deferred
                    # holds the whole snapshot (~100 MB at 1,000,000 users).
                    item = function = d = None
                    continue
                batch = [item]
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP or not nxt[1]:
                        pending = nxt
                        break
                    batch.append(nxt)
                self._commit(session, batch)
        finally:
            session.close()
            self._deliver(self._stopped, None)

    def _commit(self, session: Session, batch: list[Any]) -> None:
        try:
            results = session.commit([function for function, _write, _d in batch])
        except BaseException:
            results = [Failure()] * len(batch)
        # One wake-up of the reactor for the whole batch, not one per write.
        self._reactor.callFromThread(_fire_all, [(d, result) for (_f, _w, d), result in zip(batch, results)])


def _fire_all(outcomes: list[tuple[defer.Deferred[Any], object]]) -> None:
    """Fire each Deferred with its result, on the reactor thread, in order."""
    for d, result in outcomes:
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)
