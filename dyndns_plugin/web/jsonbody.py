"""
Request bodies as JSON. A small body is parsed at once; a large one (the
admin API takes up to 32 MiB: C{PUT /api/config}) a slice of reactor time at
a time by ijson's C parser, fed 64 KiB per step: C{json.loads} parses in one
call that holds the reactor thread (~0.5 s for 32 MiB, 11 s for a
1,000,000-user document). The result is what C{json.loads} gives, except
that numbers beyond 64-bit integers or doubles and C{NaN} are refused.
"""

from __future__ import annotations

import json
from typing import IO, Any, Iterator

import ijson

from dyndns_plugin.collector import collector_paused
from dyndns_plugin.service.slices import drive

#: Bodies up to this size are parsed in one go (a few milliseconds).
AT_ONCE = 256 * 1024
#: Bytes fed to the parser per step.
FEED = 64 * 1024


class NotJSON(ValueError):
    """The body is not one JSON value (the message says where)."""


async def parse_json_body(content: IO[bytes] | None, reactor: Any = None) -> Any:
    """The JSON value in C{content} (from its start; empty: None), or L{NotJSON}."""
    if content is None:
        return None
    size = content.seek(0, 2)
    content.seek(0)
    if size <= AT_ONCE:
        raw = content.read()
        try:
            return json.loads(raw or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise NotJSON(str(e)) from None
    found = ijson.sendable_list()
    parser = ijson.items_coro(found, "", use_float=True)

    def feed() -> Iterator[None]:
        while chunk := content.read(FEED):
            parser.send(chunk)
            yield
        parser.close()

    try:
        # Tens of thousands of new objects: the collector waits (its passes
        # over them would grow with each), and what stays is frozen after.
        with collector_paused():
            await drive(feed(), reactor)
    except ijson.JSONError as e:
        raise NotJSON(str(e).strip().splitlines()[0]) from None
    return found[0]
