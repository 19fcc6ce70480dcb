"""
L{ZonePublisher}: turns committed user changes into new zone serials.

It watches L{DynDNSService}, collects the names that changed, and after a
short batching window (a burst of updates shares one serial) computes each
zone's difference, stores the new serial with its journal step, and only
then publishes it: the SOA that queries see, what AXFR and IXFR send, and a
NOTIFY to the secondaries. If the store fails the names stay pending and are
tried again; nothing is published that a restart could lose, so the serial
never goes back.
"""

from __future__ import annotations

import gc
from typing import Any, Callable, Iterable, Iterator, Mapping

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.names.dns import ESERVER

from dyndns_plugin.acme import challenge_name, names_in
from dyndns_plugin.collector import collector_paused
from dyndns_plugin.dns.rfc2136 import UpdateError
from dyndns_plugin.dns.zones import StaticZone
from dyndns_plugin.model import User
from dyndns_plugin.replication.journal import RRsetChanges, ZoneState, next_serial, records_hash
from dyndns_plugin.replication.names import StagedChanges
from dyndns_plugin.service import Change, DynDNSService
from dyndns_plugin.service.slices import SLICE, drive
from dyndns_plugin.store import RR, IZoneJournal, JournalStep, RRsetKey, StoreError, ZoneConflict, ZoneHistory

log = Logger()

#: An update of a host zone: what it changes, given the zone and what the
#: updates before it in its batch change; raises to refuse it.
ZonePlan = Callable[[ZoneState, RRsetChanges], Mapping[RRsetKey, "tuple[RR, ...] | None"]]

#: Seconds between serials: changes within it share one (the first change
#: after a quiet time is published at once).
DEFAULT_DELAY = 0.05
#: Seconds before a failed store write is tried again.
RETRY_DELAY = 1.0
#: From this many users the zones are filled after DNS starts answering
#: (seconds at 1,000,000 users), below it before.
FILL_IN_BACKGROUND_FROM = 20_000
#: Times a batch of host-zone updates is checked again after another node took the zone's next serial.
ZONE_CONFLICTS = 5
#: Changed names diffed in one go; more are diffed L{DIFF_CHUNK} at a time,
#: in slices of reactor time.
DIFF_AT_ONCE = 50
DIFF_CHUNK = 50


class ZonePublisher:
    """
    Serials, journals and NOTIFY for the zones we serve by transfer.

    @param zones: the suffix zone first, then host zones.
    @param local_zones: write users' names into the host zones that
        contain them ("update host records in local zones").
    @param journal_size: IXFR journal steps kept per zone.
    @param on_publish: called with each zone after it got a new serial
        (the NOTIFY sender).
    @param journal: the L{IZoneJournal} that keeps serials and journal
        steps (default: the service's store, which provides it).
    """

    def __init__(
        self,
        service: DynDNSService,
        zones: Iterable[StaticZone],
        *,
        local_zones: bool = False,
        journal_size: int = 1000,
        delay: float = DEFAULT_DELAY,
        on_publish: Callable[[ZoneState], Any] | None = None,
        journal: IZoneJournal | None = None,
    ) -> None:
        self.service = service
        #: Where serials and journal steps go: by default the service's store.
        self.journal: Any = journal if journal is not None else IZoneJournal(service.store, service.store)
        self.clock = service.clock
        self.journal_size = journal_size
        self.delay = delay
        self.on_publish = on_publish
        self.zones: list[ZoneState] = []
        for index, zone in enumerate(zones):
            self.zones.append(ZoneState(zone, index == 0 or local_zones, journal_size))
        self.by_origin = {zone.origin: zone for zone in self.zones}
        self.ready = False
        self._pending = PendingNames()
        self._timer: Any = None
        self._flushing = False
        #: One change of the zones at a time: a publication of users' names
        #: or a batch of RFC 2136 updates of a host zone (each takes a serial).
        self._lock = defer.DeferredLock()
        #: Host-zone updates waiting for the batch under way to be written, by zone.
        self._zone_queue: dict[str, list[tuple[ZonePlan, defer.Deferred[None]]]] = {}
        self._zone_writing: set[str] = set()
        self._last_flush = float("-inf")
        self.published = 0  # serials published since start (for tests, status)
        # The start-up fill (L{_load}); tests make its slices small.
        self.fill_in_background_from = FILL_IN_BACKGROUND_FROM
        self.fill_slice = SLICE
        self.fill_batch = 500
        self.fill_pause = 0.0
        # Its slices share the real reactor with DNS, whatever clock the service keeps.
        from twisted.internet import reactor

        self.fill_clock: Any = reactor
        self._waiting_ready: list[defer.Deferred[None]] = []
        #: False while another node publishes (several nodes on one shared
        #: store, L{follow}): this one then takes that node's serials and
        #: journal steps from the store (L{catch_up}) and publishes nothing.
        self.leading = True
        self._catching_up = False
        self._catch_up_again = False
        self._follow_failing = False
        service.subscribe(self._changed)
        service.add_startup_step(self._load)

    # -- start

    async def _load(self) -> None:
        """
        Choose each zone's serial. A registry of L{FILL_IN_BACKGROUND_FROM}
        users or more is filled into the zones after this returns, in slices
        of reactor time, while DNS already answers: until then the zones
        serve the stored serial, transfers answer SERVFAIL (secondaries try
        again) and changes wait to be published.
        """
        history = await self.journal.load_zone_history()
        updated = await self.journal.load_zone_records()
        for zone in self.zones[1:]:
            zone.set_updated(RRsetChanges(updated.get(zone.origin, {})))
        registry = self.service.registry
        fills = [zone.filling(registry, self.fill_batch) for zone in self.zones]
        if len(registry.users) < self.fill_in_background_from:
            for fill in fills:
                for _ in fill:
                    pass
            await self._settle(history)
            return
        for zone in self.zones:
            zone.serve_stored_serial(history.get(zone.origin))
        defer.ensureDeferred(self._fill_in_slices(fills, history)).addErrback(
            lambda f: log.failure("could not load the zones", f)
        )

    async def _fill_in_slices(self, fills: list[Iterator[None]], history: dict[str, ZoneHistory]) -> None:
        for fill in fills:
            await self._drive(fill)
        # What the fill built lives as long as the users: out of the
        # collector, as the service does with the registry at start-up
        # (every full pass walked the zones' 1,000,000 entries: 10-40 ms).
        gc.freeze()
        await self._settle(history)

    def _drive(self, work: Iterator[Any]) -> defer.Deferred[None]:
        """Run C{work} in slices of reactor time (L{drive}), with this publisher's slice settings."""
        return defer.ensureDeferred(drive(work, self.fill_clock, self.fill_slice, self.fill_pause))

    async def _settle(self, history: dict[str, ZoneHistory]) -> None:
        for zone in self.zones:
            if not self.leading:
                zone.follow(history.get(zone.origin))
            elif zone.settle(history.get(zone.origin)):
                await self.journal.save_zone_version(
                    zone.origin, zone.serial, zone.digest_text, None, self.journal_size
                )
            log.info(
                "zone {origin}: serial {serial}, {names} users' names, {steps} journal steps",
                origin=zone.origin,
                serial=zone.serial,
                names=len(zone.dynamic),
                steps=len(zone.steps),
            )
        self.ready = True
        for waiting in self._waiting_ready:
            waiting.callback(None)
        self._waiting_ready.clear()
        # Secondaries learn of the serial at once (a restart may have
        # changed it), as BIND notifies when it loads a zone.
        for zone in self.zones:
            self._published(zone)
        self._schedule()

    def when_ready(self) -> defer.Deferred[None]:
        """Fires once the zones are filled and their serials chosen (at once if they are)."""
        if self.ready:
            return defer.succeed(None)
        waiting: defer.Deferred[None] = defer.Deferred()
        self._waiting_ready.append(waiting)
        return waiting

    def _published(self, zone: ZoneState) -> None:
        if self.on_publish is not None:
            try:
                self.on_publish(zone)
            except Exception:
                log.failure("publishing {origin} failed", origin=zone.origin)

    # -- changes

    def _changed(self, change: Change) -> None:
        for user in (change.old_user, change.new_user):
            if user is not None:
                self._pending.update(_names(user, self.service.suffix))
        for state in (change.old_state, change.new_state):
            if state is not None and state.txt:
                self._pending.update(challenge_name(name) for name in names_in(state.txt))
        self._schedule()

    def _schedule(self, delay: float | None = None) -> None:
        """
        Flush after C{delay}, or else as soon as C{self.delay} has passed
        since the last flush began: the first change after a quiet time is
        published at once, a burst shares one serial per C{self.delay}.
        """
        if not self.ready or not self.leading or self._flushing or self._timer is not None or not self._pending:
            return
        if self.service.stopped:
            return
        if delay is None:
            delay = max(0.0, self._last_flush + self.delay - self.clock.seconds())
        self._timer = self.clock.callLater(delay, self._flush)

    def flush(self) -> defer.Deferred[None]:
        """Publish what is pending now (tests, shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing or not self.ready or not self.leading:
            return defer.succeed(None)
        return self._flush()

    async def publish_pending(self) -> None:
        """
        Publish every change made so far and wait until no publication is
        in flight (a large one takes several reactor turns): for tests and
        for callers that must see their changes in the zones.
        """
        await self.when_ready()
        while self.leading and (self._flushing or self._pending or self._timer is not None):
            if self._flushing:
                await task.deferLater(self.fill_clock, 0.001, lambda: None)
            else:
                await self.flush()

    def _flush(self) -> defer.Deferred[None]:
        self._timer = None
        self._last_flush = self.clock.seconds()
        names, self._pending = self._pending, PendingNames()
        self._flushing = True
        return defer.ensureDeferred(self._publish(list(names)))

    async def _diff(self, zone: ZoneState, names: list[str]) -> tuple[list[RR], list[RR], dict[str, Any], int]:
        """
        L{ZoneState.diff} of C{names} and the L{records_hash} of its records,
        a slice of reactor time at a time for many (a restore or an import
        read by the poll: 50,000 names took ~250 ms in one turn). Names that
        change meanwhile are pending again.
        """
        if len(names) <= DIFF_AT_ONCE:
            whole = zone.diff(names, self.service.registry)
            return whole[0], whole[1], whole[2], records_hash(whole[0], whole[1])
        deleted: list[RR] = []
        added: list[RR] = []
        sources: dict[str, Any] = {}
        change = 0

        def chunks() -> Iterator[None]:
            nonlocal change
            for start in range(0, len(names), DIFF_CHUNK):
                part = zone.diff(names[start : start + DIFF_CHUNK], self.service.registry)
                deleted.extend(part[0])
                added.extend(part[1])
                sources.update(part[2])
                change ^= records_hash(part[0], part[1])
                yield

        await self._drive(chunks())
        return deleted, added, sources, change

    async def _publish(self, names: list[str]) -> None:
        await self._lock.acquire()
        try:
            if len(names) <= DIFF_AT_ONCE:
                await self._publish_names(names)
                return
            # Many names (a restore, an import): hundreds of thousands of
            # records are made, diffed and written; the collector waits, and
            # what stays is frozen out of it after (L{collector_paused}).
            with collector_paused():
                await self._publish_names(names)
        finally:
            self._lock.release()

    async def update_host_zone(self, origin: str, plan: ZonePlan) -> None:
        """
        An RFC 2136 update of the host zone C{origin}: C{plan(zone, pending)}
        checks it against the zone as it is with C{pending} (what the
        updates before it in its batch change) and gives the RRsets it
        changes, or raises to refuse it. They are stored with the new serial
        and journal step in one transaction, then served, then NOTIFY goes
        out; only then does this return (and the client get its answer). A
        store failure raises and changes nothing.

        Updates that arrive while a zone's write is under way are taken
        together when it ends: each checked in turn as if applied one by
        one, all written in one transaction under one new serial (RFC 2136
        lets a server increment it once for several updates; nothing is
        served before the serial that holds it).
        """
        await self.when_ready()
        if origin not in self.by_origin:
            raise KeyError(origin)
        if not self.by_origin[origin].synced:
            # a follower whose zone is not in step with the store: no step could follow from it
            raise UpdateError(ESERVER, "the zone is not in step with the other nodes yet; try again")
        waiting: defer.Deferred[None] = defer.Deferred()
        self._zone_queue.setdefault(origin, []).append((plan, waiting))
        if origin not in self._zone_writing:
            self._zone_writing.add(origin)
            defer.ensureDeferred(self._write_zone_batches(origin)).addErrback(
                lambda f: log.failure("updating {origin} failed", f, origin=origin)
            )
        await waiting

    async def _write_zone_batches(self, origin: str) -> None:
        try:
            while self._zone_queue.get(origin):
                batch = self._zone_queue.pop(origin)
                for _ in range(ZONE_CONFLICTS):
                    await self._lock.acquire()
                    try:
                        written = await self._write_zone_batch(self.by_origin[origin], batch)
                    finally:
                        self._lock.release()
                    if written:
                        break
                    # Another node stored a serial of this zone first (several
                    # nodes on one store): take it, then check the batch again.
                    await self._follow_store()
                else:
                    failure = StoreError(f"{origin}: other nodes kept changing the zone; try again")
                    for _, waiting in batch:
                        waiting.errback(failure)
        finally:
            self._zone_writing.discard(origin)

    async def _write_zone_batch(self, zone: ZoneState, batch: list[tuple[ZonePlan, defer.Deferred[None]]]) -> bool:
        """
        Check and write C{batch}, answering each update; False, answering
        none, if another node took the zone's next serial first (it is
        checked again once this node has that serial).
        """
        pending = RRsetChanges()
        refused: dict[int, Exception] = {}
        for index, (plan, _) in enumerate(batch):
            try:
                pending.update(plan(zone, pending))
            except Exception as e:  # the update's RCODE (UpdateError), or a bug in it alone
                refused[index] = e
        try:
            if pending:
                await self._save_zone_changes(zone, pending)
        except ZoneConflict:
            return False
        except Exception as e:
            for index, (_, waiting) in enumerate(batch):
                waiting.errback(refused.get(index, e))
            return True
        for index, (_, waiting) in enumerate(batch):
            if index in refused:
                waiting.errback(refused[index])
            else:
                waiting.callback(None)
        return True

    async def _save_zone_changes(self, zone: ZoneState, changes: RRsetChanges) -> None:
        """Store C{changes} of a host zone (with a new serial if a record changed), then serve them."""
        deleted, added = zone.update_diff(changes)
        if not deleted and not added:  # (the zone's own layer changed under a user's answer)
            await self.journal.save_zone_records(zone.origin, changes, None, "", None, 0)
            zone.set_updated(changes)
            return
        step = JournalStep(zone.serial, next_serial(zone.serial), tuple(deleted), tuple(added))
        change = records_hash(deleted, added)
        digest = zone.digest_after((), (), change)
        await self.journal.save_zone_records(zone.origin, changes, step.serial_to, digest, step, self.journal_size)
        zone.set_updated(changes)
        zone.apply(step, {}, change)
        self.published += 1
        self._published(zone)

    async def _publish_names(self, names: list[str]) -> None:
        try:
            plans = []
            for zone in self.zones:
                if not zone.accepts_dynamic:
                    continue
                deleted, added, found, change = await self._diff(zone, names)
                answers: dict[str, Any] | StagedChanges = found
                if len(found) > DIFF_AT_ONCE:
                    # Their new values are staged in slices too, then put in
                    # place in one step.
                    answers = StagedChanges(zone.dynamic, found)
                    await self._drive(answers.build())
                if not deleted and not added:
                    zone.adopt(answers)  # newer values of the same records: no new serial
                    if isinstance(answers, StagedChanges):
                        await self._drive(answers.release())
                    continue
                step = JournalStep(zone.serial, next_serial(zone.serial), tuple(deleted), tuple(added))
                plans.append((zone, step, answers, change))
            if not plans:
                return
            writes = [
                self.journal.save_zone_version(
                    zone.origin,
                    step.serial_to,
                    zone.digest_after((), (), change),
                    # a zone whose content was not the stored serial's: no
                    # step leads to the new one (IXFR clients transfer anew)
                    step if zone.synced else None,
                    self.journal_size,
                )
                for zone, step, _, change in plans
            ]
            results = await defer.DeferredList(writes, consumeErrors=True)
            failed = [r for ok, r in results if not ok]
            if failed and self.service.stopped:
                return  # the store closed under a last publication: the next start publishes it
            if failed:
                log.error(
                    "could not store the new zone serials ({error}); trying again",
                    error=failed[0].getErrorMessage(),
                )
                self._pending.update(names)
                self._flushing = False
                if any(f.check(ZoneConflict) for f in failed):
                    # another node stored a serial meanwhile (leadership moved,
                    # a host-zone update at another node): take its steps
                    # first, then this node's changes again
                    self.clock.callLater(0, self.catch_up)
                self._schedule(RETRY_DELAY)
                return
            for zone, step, answers, change in plans:
                zone.apply(step, answers, change)
                if not zone.synced:
                    zone.steps.clear()
                    zone.synced = True
                self.published += 1
                self._published(zone)
            for _, _, answers, _ in plans:
                if isinstance(answers, StagedChanges):
                    await self._drive(answers.release())
        finally:
            self._freeze_new_dicts()
            if self._flushing:
                self._flushing = False
                self._schedule()

    async def clear_updates(self, origin: str, name: str, rdtype: int | None = None) -> int:
        """
        Drop what updates set at C{name} in the host zone C{origin} (of type
        C{rdtype}, or every type): the zone file's records show again, with
        a new serial. How many RRsets were dropped. KeyError: no such zone.
        """
        if origin not in self.by_origin or self.by_origin[origin] is self.zones[0]:
            raise KeyError(origin)
        dropped = 0

        def plan(zone: ZoneState, pending: RRsetChanges) -> RRsetChanges:
            nonlocal dropped
            keys = {k for k in zone.updated if k not in pending} | {k for k, v in pending.items() if v is not None}
            keys = {k for k in keys if k[0] == name and (rdtype is None or k[1] == rdtype)}
            dropped = len(keys)
            return RRsetChanges({k: None for k in keys})

        await self.update_host_zone(origin, plan)
        return dropped

    def _freeze_new_dicts(self) -> None:
        """
        The dicts of a large zone's names that this publication made (copies
        after a transfer's snapshot, staged changes put in place) hold
        thousands of the registry's objects each: every pass of the garbage
        collector over them visits each entry, scattered in memory (~47 ms
        for a million at 1,000,000 users, young or old). Out of the
        collector with them, as after the fill.
        """
        made = 0
        for zone in self.zones:
            made += zone.dynamic.new_dicts
            zone.dynamic.new_dicts = 0
        if made and len(self.service.registry.users) >= self.fill_in_background_from:
            gc.freeze()

    # -- several nodes: following the publisher elsewhere

    def follow(self) -> None:
        """Start as a follower (before the service starts): another node may hold the publisher's lock."""
        self.leading = False

    def set_leading(self, leading: bool) -> None:
        """
        This node got (True) or lost (False) the publisher's lock on the
        shared store. A new publisher first takes what the old one stored,
        then publishes what its registry has that the zones lack.
        """
        if leading == self.leading:
            return
        self.leading = leading
        log.info("this node {what} the zones' publisher", what="is now" if leading else "is no longer")
        if not leading:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        defer.ensureDeferred(self._take_over()).addErrback(lambda f: log.failure("taking over publishing failed", f))

    async def _take_over(self) -> None:
        await self.when_ready()
        await self._follow_store()
        for zone in self.zones:
            # the names the old publisher set: this node's registry decides now
            self._pending.update(list(zone.replayed))
        await self.publish_pending()
        for zone in self.zones:
            if not zone.synced and self.leading:
                await self._restart_journal(zone)
            self._published(zone)  # NOTIFY: secondaries learn of the serial at once

    async def _restart_journal(self, zone: ZoneState) -> None:
        """A new serial for content that is no stored serial's: the journal starts afresh."""
        serial = next_serial(zone.serial)
        await self.journal.save_zone_version(zone.origin, serial, zone.digest_text, None, self.journal_size)
        zone.soa.serial = serial
        zone.steps.clear()
        zone.synced = True

    def catch_up(self) -> defer.Deferred[None]:
        """
        Take the serials other nodes stored since this one last looked (on
        their notification, on reconnecting, now and then): the publisher's
        publications at a follower, and at any node a host-zone update
        another node took.
        Coalesced: one read at a time, once more if asked meanwhile. A
        failure (the store down) is logged once until one works again.
        """
        if not self.ready:
            return defer.succeed(None)
        return defer.ensureDeferred(self._follow_store()).addCallbacks(self._followed, self._not_followed)

    def _followed(self, result: None) -> None:
        if self._follow_failing:
            self._follow_failing = False
            log.info("following the zones' publisher works again")

    def _not_followed(self, failure: Any) -> None:
        if not self._follow_failing:
            self._follow_failing = True
            log.failure("could not read the zones' publications; trying again", failure)

    async def _follow_store(self) -> None:
        if self._catching_up:
            self._catch_up_again = True
            return
        self._catching_up = True
        try:
            again = True
            while again:
                self._catch_up_again = False
                # what is new since the serials served (not the whole journal, each time)
                since = {zone.origin: zone.serial for zone in self.zones if zone.synced}
                history = await self.journal.load_zone_history(since)
                records = await self.journal.load_zone_records()
                await self._lock.acquire()
                try:
                    for zone in self.zones:
                        await self._follow_zone(zone, history.get(zone.origin), records.get(zone.origin, {}))
                finally:
                    self._lock.release()
                again = self._catch_up_again
        finally:
            self._catching_up = False

    async def _follow_zone(
        self, zone: ZoneState, stored: ZoneHistory | None, records: Mapping[RRsetKey, tuple[RR, ...]]
    ) -> None:
        if stored is None:
            return
        serial = zone.serial
        if zone.synced and stored.serial != serial:
            # read since this serial: the steps start at it, or the journal does not reach back to it
            steps = stored.steps if stored.steps and stored.steps[0].serial_from == serial else None
            if steps is None or not all(zone.replay(step) for step in steps) or zone.digest_text != stored.digest:
                log.info(
                    "zone {origin}: the journal does not lead from serial {serial} to {stored}; rebuilding",
                    origin=zone.origin,
                    serial=serial,
                    stored=stored.serial,
                )
                zone.replayed.clear()
                await self._drive(zone.filling(self.service.registry, self.fill_batch))
                zone.soa.serial = serial
                zone.synced = False
        if zone is not self.zones[0]:
            # what RFC 2136 updates of the host zone set, for queries
            changes = RRsetChanges({key: None for key in zone.updated if key not in records})
            changes.update({key: rrs for key, rrs in records.items() if zone.updated.get(key) != tuple(rrs)})
            if changes:
                zone.set_updated(changes)
        if not zone.synced:
            # the content came from this node's registry: it is the stored
            # serial's once the registry holds what the publisher had
            deleted, added, sources, change = await self._diff(zone, list(self._pending))
            if zone.digest_after((), (), change) == stored.digest:
                zone.adopt(sources)
                zone.digest ^= change
                zone.follow(stored)
        if zone.serial != serial:
            self._published(zone)

    def zone_for(self, origin: str) -> ZoneState | None:
        zone = self.by_origin.get(origin) if self.ready else None
        # a follower's zone whose content is no stored serial's: transfers wait
        return zone if zone is not None and zone.synced else None

    def zone_containing(self, name: str) -> ZoneState | None:
        """The closest of our zones that C{name} is in (None: none, or not ready)."""
        if not self.ready:
            return None
        inside = [z for z in self.zones if name == z.origin or name.endswith("." + z.origin)]
        return max(inside, key=lambda z: len(z.origin), default=None)


class PendingNames:
    """
    The names waiting to be published, each once, in sets of at most
    L{CHUNK}: a restore's 50,000 changes grew one set through resizes that
    each rehashed it in one call (the largest ~7 ms of one reactor turn).
    """

    CHUNK = 4096

    def __init__(self) -> None:
        self._chunks: list[set[str]] = [set()]

    def update(self, names: Iterable[str]) -> None:
        chunks = self._chunks
        for name in names:
            if any(name in chunk for chunk in chunks):
                continue
            if len(chunks[-1]) >= self.CHUNK:
                chunks.append(set())
            chunks[-1].add(name)

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self._chunks)

    def __bool__(self) -> bool:
        return bool(self._chunks[-1]) or len(self._chunks) > 1

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            yield from chunk


def _names(user: User, suffix: str) -> list[str]:
    return [f"{user.id}.{suffix}", *user.hostnames]
