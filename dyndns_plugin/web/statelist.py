"""
The users' state as one JSON document (C{/api/state}), built a slice at a
time so that a million users never hold the reactor thread for long.

The bytes are exactly C{json.dumps({"users": entries, ...}, indent=1)}: each
slice of entries is encoded on its own and indented one level deeper, and
the slices are made between the reactor's turns (a L{task.Cooperator} that
runs one slice per turn), kept in L{Pieces} of about L{WRITE_SIZE} and
written as the connection takes them (L{PiecesProducer}), never joined into
one string. The document may span a few seconds of changes at that size: an
entry is what the registry holds when its slice is encoded.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Iterator, Sequence

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


class Pieces:
    """
    A document as pieces of bytes, written one after another: a C{head},
    the pieces, a C{tail}, and their total C{size}, known without touching
    the pieces. At 1,000,000 users the pieces are thousands of 256 KiB
    strings, each touched a memory miss (~4 us): counting their lengths or
    copying them into another list cost a 13 ms turn. They are kept in a
    dict of numbers to bytes, which holds nothing the garbage collector
    tracks, so CPython does not track the dict either: a list of them was
    visited piece by piece at every full pass (~9 ms). (One bytearray
    instead grew by reallocations that copied hundreds of MB in one turn.)
    """

    def __init__(self, pieces: Iterable[bytes] = ()) -> None:
        self._pieces: dict[int, bytes] = {}
        self._size = 0
        self.head = self.tail = b""
        for piece in pieces:
            self.append(piece)

    def append(self, piece: bytes) -> None:
        self._pieces[len(self._pieces)] = piece
        self._size += len(piece)

    def framed(self, head: bytes, tail: bytes) -> Pieces:
        """These pieces between C{head} and C{tail} (sharing them: not to be appended to after)."""
        framed = Pieces()
        framed._pieces, framed._size, framed.head, framed.tail = self._pieces, self._size, head, tail
        return framed

    @property
    def size(self) -> int:
        return len(self.head) + self._size + len(self.tail)

    def __bool__(self) -> bool:
        """Are there pieces between the head and the tail?"""
        return bool(self._pieces)

    def __len__(self) -> int:
        return len(self._pieces) + 2

    def __getitem__(self, index: int) -> bytes:
        if index == 0:
            return self.head
        if index == len(self._pieces) + 1:
            return self.tail
        return self._pieces[index - 1]

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        yield from self._pieces.values()
        yield self.tail


def join_document(body: Pieces, extra: dict[str, Any]) -> Pieces:
    """
    C{json.dumps({"users": [...], **extra}, indent=1) + "\n"} as L{Pieces}
    around C{body}, the encoded slices already joined with C{",\n"}
    (L{encoded_entries}): never copied into one string (~250 MB at
    1,000,000 users).
    """
    if not body:
        return Pieces().framed(json.dumps({"users": [], **extra}, indent=1).encode() + b"\n", b"")
    tail = "".join(f",\n {json.dumps(k)}: " + json.dumps(v, indent=1).replace("\n", "\n ") for k, v in extra.items())
    return body.framed(b'{\n "users": [\n', ("\n ]" + tail + "\n}\n").encode())


@implementer(IPullProducer)
class PiecesProducer:
    """
    Writes C{pieces} to C{request} about L{WRITE_SIZE} bytes at a time (a
    large piece in parts), as the connection takes them, then finishes it:
    a transport joins everything written before sending, which at this size
    would stall the reactor.
    """

    def __init__(self, request: Any, pieces: Pieces | Sequence[bytes]) -> None:
        self.request, self.pieces = request, pieces
        self.next = 0  # the piece to write from
        self.offset = 0  # where in it

    def start(self) -> None:
        self.request.registerProducer(self, False)

    def resumeProducing(self) -> None:
        pieces, batch, size = self.pieces, [], 0
        while self.next < len(pieces) and size < WRITE_SIZE:
            piece = pieces[self.next]
            part = piece[self.offset : self.offset + WRITE_SIZE - size]  # all of it: the piece itself
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
) -> defer.Deferred[tuple[Pieces, str | None, int | None]]:
    """
    The users after C{after} in id order (all of them, or C{limit}), each as
    C{entry(user_id)} (None: left out, gone meanwhile), encoded L{SLICE}
    users per reactor turn as a list C{depth} containers deep
    (L{encode_slice}); C{each} also gets every slice's entries. Fires with
    the encoded slices joined with C{",\n"} in L{Pieces} of about
    L{WRITE_SIZE}, the last id read and how many of C{limit} are left.
    """
    # Slices are joined (with the separator the document puts between
    # them) into pieces of about WRITE_SIZE: 40,000 slices of 25 users made
    # the last turn, which lays out and measures every piece, 14 ms long.
    body = Pieces()
    group: list[bytes] = []
    last, left, group_size = after, limit, 0

    def close_group() -> None:
        nonlocal group_size
        body.append((b",\n" if body else b"") + b",\n".join(group))
        group.clear()
        group_size = 0

    def work() -> Iterator[None]:
        nonlocal last, left, group_size
        while True:
            want = SLICE if left is None else min(SLICE, left)
            ids = registry.ids_after(last, want)
            if ids:
                entries = [e for e in map(entry, ids) if e is not None]
                if entries:
                    if each is not None:
                        each(entries)
                    encoded = encode_slice(entries, depth).encode()
                    group.append(encoded)
                    group_size += len(encoded)
                    if group_size >= WRITE_SIZE:
                        close_group()
                last = ids[-1]
                if left is not None:
                    left -= len(ids)
            if len(ids) < want or left == 0:
                return
            yield None

    def done(_: object) -> tuple[Pieces, str | None, int | None]:
        if group:
            close_group()
        return body, last, left

    return cooperator.coiterate(work()).addCallback(done)


def state_document(
    registry: Registry,
    entry: Callable[[str], dict[str, Any] | None],
    after: str | None = None,
    limit: int | None = None,
    cooperator: task.Cooperator = ONE_SLICE_PER_TURN,
    zones: Callable[[], list[dict[str, Any]]] | None = None,
) -> defer.Deferred[Pieces]:
    """
    The users after C{after} in id order (all of them, or C{limit}, then with
    C{"next"}: the id to ask after for the next page, or None at the end, and
    C{"counts"}: the users in each state, all of them),
    each as C{entry(user_id)} (None: left out, gone meanwhile); then
    C{"zones"}: what C{zones()} gives, if given.
    """

    def done(read: tuple[Pieces, str | None, int | None]) -> Pieces:
        body, last, left = read
        extra: dict[str, Any] = {}
        if limit is not None:
            more = left == 0 and bool(registry.ids_after(last, 1))
            # A page also says how many users there are in each state (kept by
            # the registry, so a page costs nothing more): a paging UI's totals.
            extra = {"next": last if more else None, "counts": registry.counts_by_state()}
        if zones is not None:
            extra["zones"] = zones()
        return join_document(body, extra)

    return encoded_entries(registry, entry, after, limit, cooperator).addCallback(done)
