"""Request bodies as JSON: small ones at once, large ones fed to the parser a slice of reactor time at a time."""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.service import slices
from dyndns_plugin.web import jsonbody
from dyndns_plugin.web.jsonbody import NotJSON, parse_json_body


def document(users: int) -> dict[str, Any]:
    entries = [
        {"id": f"user{k}", "hostnames": [f"h{k}.example.net"], "notes": "caf\u00e9 \u2603", "ttl": 60, "x": 1.5}
        for k in range(users)
    ]
    return {"settings": {"a": None, "b": True}, "users": {"format": "f", "version": 1, "users": entries}}


class CountingClock(task.Clock):
    """A clock that counts the calls scheduled on it: each is a turn given back to the reactor."""

    scheduled = 0

    def callLater(self, *args: Any, **kwargs: Any) -> Any:
        self.scheduled += 1
        return super().callLater(*args, **kwargs)


class ParseTests(SynchronousTestCase):
    def parse(self, raw: bytes) -> tuple[Any, int]:
        """The parsed value and the reactor turns it gave back (every feed ends a slice here)."""
        self.patch(slices, "SLICE", 0.0)
        clock = CountingClock()
        d = defer.ensureDeferred(parse_json_body(io.BytesIO(raw), clock))
        clock.advance(0)
        return self.successResultOf(d), clock.scheduled

    def test_large_body_same_value_over_many_turns(self) -> None:
        value = document(3000)
        raw = json.dumps(value).encode()
        self.assertGreater(len(raw), jsonbody.AT_ONCE)
        parsed, turns = self.parse(raw)
        self.assertEqual(parsed, value)
        self.assertGreaterEqual(turns, len(raw) // jsonbody.FEED)

    def test_small_body_at_once(self) -> None:
        parsed, turns = self.parse(b'{"a": [1, 2.5, "x"]}')
        self.assertEqual((parsed, turns), ({"a": [1, 2.5, "x"]}, 0))
        self.assertIsNone(self.successResultOf(defer.ensureDeferred(parse_json_body(io.BytesIO(b"")))))
        self.assertIsNone(self.successResultOf(defer.ensureDeferred(parse_json_body(None))))

    def test_bad_large_bodies(self) -> None:
        """Cut short, trailing garbage, a second value, bad UTF-8: NotJSON with a one-line reason."""
        raw = json.dumps(document(3000)).encode()
        for bad, reason in (
            (raw[:-1], "premature EOF"),
            (raw + b" x", "trailing garbage"),
            (raw + raw, "trailing garbage"),
            (raw[:-2] + b'"\xff"}}', "UTF8"),
        ):
            self.patch(slices, "SLICE", 0.0)
            clock = task.Clock()
            d = defer.ensureDeferred(parse_json_body(io.BytesIO(bad), clock))
            for _ in range(10_000):
                if d.called:
                    break
                clock.advance(0)
            error = self.failureResultOf(d, NotJSON).value
            self.assertIn(reason, str(error))
            self.assertNotIn("\n", str(error))

    def test_bad_small_body(self) -> None:
        d = defer.ensureDeferred(parse_json_body(io.BytesIO(b'{"a": ')))
        self.failureResultOf(d, NotJSON)
