"""The /api/state document, built a slice per reactor turn and written piece by piece."""

from __future__ import annotations

import gc
import json
from typing import Any

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from dyndns_plugin.model import User
from dyndns_plugin.registry import Registry
from dyndns_plugin.web import statelist
from dyndns_plugin.web.statelist import Pieces, PiecesProducer, encode_slice, join_document, state_document


def entries(count: int) -> list[dict[str, Any]]:
    return [{"id": f"u{i}", "names": [f"a{i}", "b"], "ttl": None, "x": {"y": [1, "\u00e9"]}} for i in range(count)]


class EncodingTests(SynchronousTestCase):
    def test_same_bytes_as_one_piece(self) -> None:
        """Any number of users in any slice size: exactly json.dumps(indent=1), with or without next."""
        for count in range(8):
            for size in (1, 2, 3, 100):
                users = entries(count)
                slices = [encode_slice(users[k : k + size]).encode() for k in range(0, count, size)]
                for extra in ({}, {"next": "u3"}, {"next": None}):
                    expected = json.dumps({"users": users, **extra}, indent=1).encode() + b"\n"
                    body = Pieces([b",\n".join(slices)] if slices else [])
                    self.assertEqual(b"".join(join_document(body, extra)), expected, (count, size, extra))


class ProducerTests(SynchronousTestCase):
    def test_writes_everything_in_bounded_writes(self) -> None:
        """Pieces go out a few at a time (never all joined at once), then the request is finished."""
        self.patch(statelist, "WRITE_SIZE", 10)
        pieces = [bytes([65 + k]) * 4 for k in range(9)]
        request = DummyRequest([b""])
        PiecesProducer(request, pieces).start()
        self.assertEqual(b"".join(request.written), b"".join(pieces))
        self.assertEqual([len(w) for w in request.written], [10, 10, 10, 6])
        self.assertEqual(request.finished, 1)

    def test_large_pieces_go_out_in_parts(self) -> None:
        """A piece larger than WRITE_SIZE is written a part at a time, joined with its neighbours' parts."""
        self.patch(statelist, "WRITE_SIZE", 10)
        pieces = [b"a" * 3, b"b" * 25, b"c" * 4, b"d" * 10]
        request = DummyRequest([b""])
        PiecesProducer(request, pieces).start()
        self.assertEqual(b"".join(request.written), b"".join(pieces))
        self.assertEqual([len(w) for w in request.written], [10, 10, 10, 10, 2])
        self.assertEqual(request.finished, 1)

    def test_stop(self) -> None:
        """A connection gone: the producer drops what is left."""
        producer = PiecesProducer(DummyRequest([b""]), [b"a", b"b"])
        producer.stopProducing()
        self.assertEqual(len(producer.pieces), 0)


class _Call:
    """What a scheduler returns: the Cooperator may cancel it when stopped."""

    def cancel(self) -> None:
        pass


class DocumentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = Registry("dyn.example.com", 60)
        for k in range(7):
            self.registry.put_user(User(id=f"user{k}"))
        self.scheduled: list[Any] = []  # what the reactor would run at its next turn
        self.cooperator = task.Cooperator(terminationPredicateFactory=lambda: lambda: True, scheduler=self.schedule)
        self.patch(statelist, "SLICE", 2)

    def schedule(self, function: Any) -> Any:
        self.scheduled.append(function)
        return _Call()

    def turn(self) -> None:
        now, self.scheduled = self.scheduled, []
        for function in now:
            function()

    def build(self, after: str | None = None, limit: int | None = None) -> tuple[Any, int]:
        """The document (parsed) and the reactor turns it took."""
        result: list[Pieces] = []
        d = state_document(self.registry, lambda i: {"id": i}, after, limit, self.cooperator)
        d.addCallback(result.append)
        turns = 0
        while not result:
            turns += 1
            self.turn()
        return json.loads(b"".join(result[0])), turns

    def test_all_in_slices(self) -> None:
        """Seven users, two per turn: four turns, every user once, in order."""
        document, turns = self.build()
        self.assertEqual(document, {"users": [{"id": f"user{k}"} for k in range(7)]})
        self.assertEqual(turns, 4)

    def test_pieces_out_of_the_collectors_sight(self) -> None:
        """
        Slices are joined into pieces of about WRITE_SIZE bytes (fewer
        pieces to lay out at the end) kept where the garbage collector does
        not look (it visited every piece of a list at each full pass), and
        the bytes are still exactly json.dumps's.
        """
        users = [{"id": f"user{k}"} for k in range(7)]
        expected = json.dumps({"users": users}, indent=1).encode() + b"\n"
        for write_size, most_pieces in ((1, 6), (80, 4), (10**6, 3)):
            self.patch(statelist, "WRITE_SIZE", write_size)
            result: list[Pieces] = []
            state_document(self.registry, lambda i: {"id": i}, None, None, self.cooperator).addCallback(result.append)
            while not result:
                self.turn()
            self.assertEqual(b"".join(result[0]), expected)
            self.assertEqual(result[0].size, len(expected))  # counted as appended, not by touching the pieces
            self.assertLessEqual(len(result[0]), most_pieces, write_size)
            gc.collect()
            self.assertFalse(gc.is_tracked(result[0]._pieces))
        # one piece for all four slices: head, the piece, tail
        self.assertEqual(len(result[0]), 3)

    def test_pages(self) -> None:
        counts = self.registry.counts_by_state()
        self.assertEqual(sum(counts.values()), 7)
        first = {"users": [{"id": f"user{k}"} for k in range(3)], "next": "user2", "counts": counts}
        self.assertEqual(self.build(None, 3)[0], first)
        self.assertEqual(self.build("user2", 3)[0]["next"], "user5")
        self.assertEqual(self.build("user5", 3)[0], {"users": [{"id": "user6"}], "next": None, "counts": counts})
        self.assertEqual(self.build("user3", 3)[0]["next"], None)  # exactly the rest: no next

    def test_removed_meanwhile(self) -> None:
        """A user removed between two slices is left out; one added after the current position is included."""
        result: list[Pieces] = []
        users = self.registry.users
        d = state_document(self.registry, lambda i: {"id": i} if i in users else None, None, None, self.cooperator)
        d.addCallback(result.append)
        self.turn()  # the first slice: user0, user1
        self.registry.remove_user("user4")
        self.registry.put_user(User(id="user9"))
        while not result:
            self.turn()
        ids = [u["id"] for u in json.loads(b"".join(result[0]))["users"]]
        self.assertEqual(ids, ["user0", "user1", "user2", "user3", "user5", "user6", "user9"])
