"""
The users' state as one JSON document (C{/api/state}), built a slice at a
time so that a million users never hold the reactor thread for long.

The bytes are exactly C{json.dumps({"users": entries, ...}, indent=1)}: each
slice of entries is encoded on its own and indented one level deeper, and
the slices are made between the reactor's turns (a L{task.Cooperator} that
runs one slice per turn), appended to one buffer and written as the
connection takes them (L{PiecesProducer}). The document may span a few
seconds of changes at that size: an entry is what the registry holds when
its slice is encoded.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator, Sequence

from twisted.internet import defer, task
from twisted.internet.interfaces import IPullProducer
from zope.interface import implementer

from dyndns_plugin.registry import Registry

#: Users encoded per reactor turn: a few milliseconds.
SLICE = 25
#: Bytes written to the connection at a time.
WRITE_SIZE = 256 * 1024
#: One slice per turn, scheduled on the global reactor.
ONE_SLICE_PER_TURN = task.Cooperator(terminationPredicateFactory=lambda: lambda: True)


def encode_slice(entries: list[dict[str, Any]], depth: int = 1) -> str:
    """
    C{entries} as they appear inside C{json.dumps(document, indent=1)} in a
    list C{depth} containers deep (C{{"users": [...]}}: 1), without
    separators around.
    """
    pad = " " * depth
    text = json.dumps(entries, indent=1)  # "[\n {\n  ...\n }\n]"
    return pad + text[2:-2].replace("\n", "\n" + pad)


def join_document(body: bytes | bytearray, extra: dict[str, Any]) -> list[bytes | bytearray]:
    """
    The pieces of C{json.dumps({"users": [...], **extra}, indent=1) + "\n"}
    around C{body}, the encoded slices joined with C{",\n"} (L{encoded_entries}),
    to be written one after another: never copied into one string (~250 MB
    at 1,000,000 users).
    """
    if not body:
        return [json.dumps({"users": [], **extra}, indent=1).encode() + b"\n"]
    tail = "".join(f",\n {json.dumps(k)}: " + json.dumps(v, indent=1).replace("\n", "\n ") for k, v in extra.items())
    return [b'{\n "users": [\n', body, ("\n ]" + tail + "\n}\n").encode()]


@implementer(IPullProducer)
class PiecesProducer:
    """
    Writes C{pieces} to C{request} about L{WRITE_SIZE} bytes at a time (a
    large piece in parts), as the connection takes them, then finishes it:
    a transport joins everything written before sending, which at this size
    would stall the reactor.
    """

    def __init__(self, request: Any, pieces: Sequence[bytes | bytearray]) -> None:
        self.request, self.pieces = request, pieces
        self.next = 0  # the piece to write from
        self.offset = 0  # where in it

    def start(self) -> None:
        self.request.registerProducer(self, False)

    def resumeProducing(self) -> None:
        pieces, batch, size = self.pieces, [], 0
        while self.next < len(pieces) and size < WRITE_SIZE:
            piece = pieces[self.next]
            end = self.offset + WRITE_SIZE - size
            if isinstance(piece, bytes) and self.offset == 0 and end >= len(piece):
                part = piece  # all of it: no copy
            else:
                part = bytes(memoryview(piece)[self.offset : end])
            batch.append(part)
            size += len(part)
            self.offset += len(part)
            if self.offset >= len(piece):
                self.next, self.offset = self.next + 1, 0
        if batch:
            self.request.write(batch[0] if len(batch) == 1 else b"".join(batch))
        if self.next >= len(pieces):
            self.request.unregisterProducer()
            self.request.finish()

    def stopProducing(self) -> None:
        self.pieces, self.next, self.offset = [], 0, 0


def encoded_entries(
    registry: Registry,
    entry: Callable[[str], dict[str, Any] | None],
    after: str | None = None,
    limit: int | None = None,
    cooperator: task.Cooperator = ONE_SLICE_PER_TURN,
    depth: int = 1,
    each: Callable[[list[dict[str, Any]]], Any] | None = None,
) -> defer.Deferred[tuple[bytearray, str | None, int | None]]:
    """
    The users after C{after} in id order (all of them, or C{limit}), each as
    C{entry(user_id)} (None: left out, gone meanwhile), encoded L{SLICE}
    users per reactor turn as a list C{depth} containers deep
    (L{encode_slice}); C{each} also gets every slice's entries. Fires with
    the encoded slices joined with C{",\n"}, the last id read and how many
    of C{limit} are left.
    """
    # One buffer: thousands of pieces in a list made every full pass of the
    # garbage collector visit each (a memory miss apiece: ~9 ms at
    # 1,000,000 users), and joining them into large pieces made turns that
    # each first touch megabytes of fresh memory (15 ms). A bytearray holds
    # no objects: the collector does not look at it; it grows a slice at a time.
    body = bytearray()
    last, left = after, limit

    def work() -> Iterator[None]:
        nonlocal last, left
        while True:
            want = SLICE if left is None else min(SLICE, left)
            ids = registry.ids_after(last, want)
            if ids:
                entries = [e for e in map(entry, ids) if e is not None]
                if entries:
                    if each is not None:
                        each(entries)
                    if body:
                        body.extend(b",\n")
                    body.extend(encode_slice(entries, depth).encode())
                last = ids[-1]
                if left is not None:
                    left -= len(ids)
            if len(ids) < want or left == 0:
                return
            yield None

    return cooperator.coiterate(work()).addCallback(lambda _: (body, last, left))


def state_document(
    registry: Registry,
    entry: Callable[[str], dict[str, Any] | None],
    after: str | None = None,
    limit: int | None = None,
    cooperator: task.Cooperator = ONE_SLICE_PER_TURN,
) -> defer.Deferred[list[bytes | bytearray]]:
    """
    The users after C{after} in id order (all of them, or C{limit}, then with
    C{"next"}: the id to ask after for the next page, or None at the end, and
    C{"counts"}: the users in each state, all of them),
    each as C{entry(user_id)} (None: left out, gone meanwhile).
    """

    def done(read: tuple[bytearray, str | None, int | None]) -> list[bytes | bytearray]:
        body, last, left = read
        if limit is None:
            return join_document(body, {})
        more = left == 0 and bool(registry.ids_after(last, 1))
        # A page also says how many users there are in each state (kept by
        # the registry, so a page costs nothing more): a paging UI's totals.
        return join_document(body, {"next": last if more else None, "counts": registry.counts_by_state()})

    return encoded_entries(registry, entry, after, limit, cooperator).addCallback(done)
