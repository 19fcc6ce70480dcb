"""DynDNSService: the write path's semantics, on the in-memory store."""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.acme import Op, TXTEdit
from dyndns_plugin.model import HostState, UpdateStatus, User, ValidationError
from dyndns_plugin.service import Change, DynDNSService
from dyndns_plugin.store import ANY_STATE, NameTaken, NoSuchUser, StoreError, UserExists
from dyndns_plugin.store.memory import MemoryUserStore

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


class ServiceTestCase(SynchronousTestCase):
    """A started service on a memory store and a fake clock."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryUserStore()
        self.service = DynDNSService(
            self.store,
            "dyn.example.com",
            default_ttl=30,
            min_ttl=10,
            max_ttl=3600,
            clock=self.clock,
            poll_interval=0.5,
        )
        self.changes: list[Change] = []
        self.service.subscribe(self.changes.append)
        self.service.startService()
        self.successResultOf(self.service.ready)
        self.addCleanup(self.service.stopService)
        self.add(User("alice", offline_ipv4="192.0.2.1", hostnames=["alice.example.org", "*.alice.example.net"]))
        self.add(User("bob"))

    def add(self, user: User) -> User:
        return self.successResultOf(self.service.add_user(user))

    def update(self, user_id: str, *addresses: str, ttl: int | None = None):
        return self.successResultOf(
            self.service.update(
                user_id,
                [ipaddress.ip_address(a) for a in addresses],
                ttl,
                method="test",
                client_address="203.0.113.1",
            )
        )

    def served(self, name: str) -> tuple[str, ...] | None:
        answer = self.service.registry.answer(name)
        return None if answer is None else tuple(str(a) for a in answer.addresses)


class UpdateTests(ServiceTestCase):
    def test_good(self) -> None:
        """A new address is GOOD, durable, and served at once with its TTL."""
        result = self.update("alice", "198.51.100.7", ttl=60)
        self.assertEqual(result.status, UpdateStatus.GOOD)
        self.assertEqual(self.served("alice.dyn.example.com"), ("198.51.100.7",))
        answer = self.service.registry.answer("alice.dyn.example.com")
        assert answer is not None
        self.assertEqual(answer.ttl, 60)
        stored = self.successResultOf(self.store.load()).states["alice"]
        self.assertEqual(stored, result.state)
        self.assertEqual(
            (stored.method, stored.client_address, stored.updated_at),
            ("test", "203.0.113.1", 1_700_000_000),
        )

    def test_nochg(self) -> None:
        """The same addresses and TTL again are NOCHG and write nothing."""
        self.update("alice", "198.51.100.7")
        generation = self.successResultOf(self.store.load()).generation
        self.clock.advance(5)
        result = self.update("alice", "198.51.100.7")
        self.assertEqual(result.status, UpdateStatus.NOCHG)
        self.assertEqual(self.successResultOf(self.store.load()).generation, generation)
        self.assertEqual(result.state.updated_at, 1_700_000_000)

    def test_ttl_change_is_a_change(self) -> None:
        self.update("alice", "198.51.100.7", ttl=60)
        self.assertEqual(self.update("alice", "198.51.100.7", ttl=120).status, UpdateStatus.GOOD)

    def test_v4_and_v6(self) -> None:
        """One update may carry one address of each family; both are served."""
        self.update("alice", "198.51.100.7", "2001:db8::7")
        self.assertEqual(self.served("alice.dyn.example.com"), ("198.51.100.7", "2001:db8::7"))

    def test_family_not_given_is_kept(self) -> None:
        """Updating IPv4 only keeps the IPv6 address (and vice versa)."""
        self.update("alice", "198.51.100.7", "2001:db8::7")
        self.update("alice", "198.51.100.8")
        self.assertEqual(self.served("alice.dyn.example.com"), ("198.51.100.8", "2001:db8::7"))
        self.update("alice", "2001:db8::8")
        self.assertEqual(self.served("alice.dyn.example.com"), ("198.51.100.8", "2001:db8::8"))

    def test_concurrent_families(self) -> None:
        """An IPv4 and an IPv6 update in flight together both survive."""
        self.store_gate: defer.Deferred[None] = defer.Deferred()
        original = self.store.save_state
        waiting: list[defer.Deferred[None]] = []

        def slow_save(state: HostState, expected: Any = ANY_STATE) -> defer.Deferred[None]:
            d = original(state, expected)
            gate: defer.Deferred[None] = defer.Deferred()
            waiting.append(gate)
            return gate.addCallback(lambda _: d).addCallback(lambda _: None)

        self.store.save_state = slow_save  # type: ignore[method-assign]
        d4 = self.service.update("alice", [V4("198.51.100.9")])
        d6 = self.service.update("alice", [V6("2001:db8::9")])
        while waiting:
            waiting.pop(0).callback(None)
        self.assertEqual(self.successResultOf(d4).status, UpdateStatus.GOOD)
        self.assertEqual(self.successResultOf(d6).status, UpdateStatus.GOOD)
        self.assertEqual(self.served("alice.dyn.example.com"), ("198.51.100.9", "2001:db8::9"))

    def test_ttl_clamped(self) -> None:
        """A TTL outside the bounds is clamped; none means the default."""
        self.assertEqual(self.update("alice", "198.51.100.7", ttl=1).state.ttl, 10)
        self.assertEqual(self.update("alice", "198.51.100.7", ttl=99999).state.ttl, 3600)
        self.assertEqual(self.update("alice", "198.51.100.7").state.ttl, 30)

    def test_errors(self) -> None:
        """Unknown users, no address, two addresses of a family: errors, nothing written."""
        generation = self.successResultOf(self.store.load()).generation
        self.assertEqual(self.update("nobody", "198.51.100.7").status, UpdateStatus.NO_SUCH_USER)
        self.assertEqual(self.update("alice").status, UpdateStatus.BAD_ADDRESS)
        bad = self.update("alice", "198.51.100.7", "198.51.100.8")
        self.assertEqual(bad.status, UpdateStatus.BAD_ADDRESS)
        self.assertFalse(bad.ok)
        self.assertEqual(self.successResultOf(self.store.load()).generation, generation)
        self.assertEqual(self.served("alice.dyn.example.com"), ())

    def test_disabled_cannot_update(self) -> None:
        """A disabled user cannot update and gets no answers."""
        self.update("alice", "198.51.100.7")
        self.successResultOf(self.service.set_disabled("alice", True))
        self.assertEqual(self.update("alice", "198.51.100.8").status, UpdateStatus.DISABLED)
        self.assertIsNone(self.served("alice.dyn.example.com"))
        self.assertIsNone(self.served("alice.example.org"))
        self.successResultOf(self.service.set_disabled("alice", False))
        self.assertEqual(self.served("alice.dyn.example.com"), ("198.51.100.7",))

    def test_store_failure(self) -> None:
        """If the store fails, the update is STORE_FAILED and nothing changes in DNS."""
        self.update("alice", "198.51.100.7")
        self.changes.clear()
        self.store.fail_writes = StoreError("disk full")
        result = self.update("alice", "198.51.100.8")
        self.assertEqual(result.status, UpdateStatus.STORE_FAILED)
        self.assertEqual(self.served("alice.dyn.example.com"), ("198.51.100.7",))
        self.assertEqual(self.changes, [])
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)


class StoreOutageTests(ServiceTestCase):
    def test_failures_logged_once_per_outage(self) -> None:
        """
        Every update during an outage is STORE_FAILED, but only the first
        is logged with its traceback (a database down for minutes under
        thousands of retrying clients must not flood the log); the first
        write that works ends the outage, and the next failure is logged.
        """
        self.store.fail_writes = StoreError("database unreachable")
        for n in range(5):
            self.assertEqual(self.update("alice", f"198.51.100.{n + 1}").status, UpdateStatus.STORE_FAILED)
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)
        self.store.fail_writes = None
        self.assertEqual(self.update("alice", "198.51.100.10").status, UpdateStatus.GOOD)
        self.store.fail_writes = StoreError("database unreachable")
        self.assertEqual(self.update("alice", "198.51.100.11").status, UpdateStatus.STORE_FAILED)
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)


class SharedStoreTests(ServiceTestCase):
    """
    Another node wrote the store behind this service's back (written here
    straight to the store, which the service only hears of by its poll): a
    write never overwrites it unseen, and on a shared store NOCHG is
    checked against the committed state.
    """

    def setUp(self) -> None:
        super().setUp()
        self.update("alice", "198.51.100.7")

    def peer_writes(self, **changes: Any) -> HostState:
        committed = attrs.evolve(self.successResultOf(self.store.load()).states["alice"], **changes)
        self.successResultOf(self.store.save_state(committed))
        return committed

    def stored(self) -> HostState:
        return self.successResultOf(self.store.load()).states["alice"]

    def test_write_decided_again_on_newer_state(self) -> None:
        """A peer's challenge value survives this node's address write, which was decided on an older state."""
        peer = self.peer_writes(txt=(("alice.dyn.example.com", "token-1", 1_700_003_600.0),))
        result = self.update("alice", "198.51.100.8")
        self.assertEqual(result.status, UpdateStatus.GOOD)
        self.assertEqual(self.stored().txt, peer.txt)
        self.assertEqual(str(self.stored().ipv4), "198.51.100.8")
        self.assertEqual(self.service.registry.state("alice"), self.stored())

    def test_concurrent_challenge_values_both_kept(self) -> None:
        """Two nodes adding values for two names: neither edit is lost."""
        self.peer_writes(txt=(("alice.dyn.example.com", "from-peer", 1_700_003_600.0),))
        edit = TXTEdit(Op.ADD, "alice.example.org", "from-here")
        result = self.successResultOf(self.service.edit_txt("alice", [edit], method="test"))
        self.assertEqual(result.status, UpdateStatus.GOOD)
        self.assertEqual({v for _, v, _ in self.stored().txt}, {"from-peer", "from-here"})

    def test_nochg_checked_against_committed_state(self) -> None:
        """Memory says the address is served; the store (another node) says otherwise: GOOD, written."""
        self.store.shared = True
        self.peer_writes(ipv4=ipaddress.ip_address("198.51.100.99"))
        result = self.update("alice", "198.51.100.7")
        self.assertEqual(result.status, UpdateStatus.GOOD)
        self.assertEqual(str(self.stored().ipv4), "198.51.100.7")
        self.assertEqual(self.update("alice", "198.51.100.7").status, UpdateStatus.NOCHG)

    def test_nochg_from_memory_on_a_private_store(self) -> None:
        """A store no other node serves from: NOCHG from memory, no read (the write path's cost)."""
        self.peer_writes(ipv4=ipaddress.ip_address("198.51.100.99"))
        self.assertEqual(self.update("alice", "198.51.100.7").status, UpdateStatus.NOCHG)

    def test_nochg_when_the_store_cannot_tell(self) -> None:
        """A shared store that fails the check: a store error, never a NOCHG it cannot vouch for."""
        self.store.shared = True
        self.store.load_users = lambda ids: defer.fail(StoreError("down"))  # type: ignore[method-assign,assignment]
        result = self.update("alice", "198.51.100.7")
        self.assertEqual(result.status, UpdateStatus.STORE_FAILED)
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)

    def test_user_removed_by_peer(self) -> None:
        """The user was removed elsewhere: the update is refused as unknown, and memory forgets it."""
        self.store.shared = True
        self.successResultOf(self.store.remove_user("alice"))
        self.assertEqual(self.update("alice", "198.51.100.7").status, UpdateStatus.NO_SUCH_USER)
        self.assertIsNone(self.service.registry.user("alice"))


class OfflineTests(ServiceTestCase):
    def test_offline_with_offline_ip(self) -> None:
        """Offline serves the offline IP; the last address is kept for display."""
        self.update("alice", "198.51.100.7", ttl=300)
        result = self.successResultOf(self.service.set_offline("alice", "test"))
        self.assertEqual(result.status, UpdateStatus.GOOD)
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.1",))
        answer = self.service.registry.answer("alice.dyn.example.com")
        assert answer is not None
        self.assertEqual(answer.ttl, 30)
        self.assertEqual(str(self.service.registry.states["alice"].ipv4), "198.51.100.7")
        again = self.successResultOf(self.service.set_offline("alice", "test"))
        self.assertEqual(again.status, UpdateStatus.NOCHG)

    def test_offline_without_offline_ip(self) -> None:
        """Offline without an offline IP: the name exists but has no address."""
        self.update("bob", "198.51.100.7")
        self.successResultOf(self.service.set_offline("bob"))
        self.assertEqual(self.served("bob.dyn.example.com"), ())

    def test_back_online_same_address(self) -> None:
        """Coming back with the same address is a change (offline -> online)."""
        self.update("bob", "198.51.100.7")
        self.successResultOf(self.service.set_offline("bob"))
        self.assertEqual(self.update("bob", "198.51.100.7").status, UpdateStatus.GOOD)
        self.assertEqual(self.served("bob.dyn.example.com"), ("198.51.100.7",))

    def test_offline_unknown_or_disabled(self) -> None:
        result = self.successResultOf(self.service.set_offline("nobody"))
        self.assertEqual(result.status, UpdateStatus.NO_SUCH_USER)
        self.successResultOf(self.service.set_disabled("bob", True))
        result = self.successResultOf(self.service.set_offline("bob"))
        self.assertEqual(result.status, UpdateStatus.DISABLED)


class NameTests(ServiceTestCase):
    def test_additional_and_wildcard_names(self) -> None:
        """Additional names and wildcard aliases answer like the main name."""
        self.update("alice", "198.51.100.7")
        for name in ("alice.example.org", "x.alice.example.net", "a.b.alice.example.net"):
            self.assertEqual(self.served(name), ("198.51.100.7",), name)
        self.assertIsNone(self.served("alice.example.net"))
        self.assertIsNone(self.served("other.example.org"))

    def test_main_name_is_not_a_wildcard(self) -> None:
        """Without a wildcard alias, names below the main name are unknown."""
        self.update("bob", "198.51.100.7")
        self.assertIsNone(self.served("www.bob.dyn.example.com"))

    def test_suffix_names_of_others_refused(self) -> None:
        """Below the suffix a user may only add names in their own subtree."""
        for name in ("bob.dyn.example.com", "*.dyn.example.com", "x.bob.dyn.example.com", "dyn.example.com"):
            failure = self.failureResultOf(self.service.add_user(User("carol", hostnames=[name])), ValidationError)
            self.assertEqual(failure.value.field, "hostnames")
        self.add(User("carol", hostnames=["*.carol.dyn.example.com", "www.carol.dyn.example.com"]))

    def test_reserved_names(self) -> None:
        """A user id whose main name is one of the zone's own names is refused."""
        service = DynDNSService(
            MemoryUserStore(),
            "dyn.example.com",
            clock=task.Clock(),
            poll_interval=None,
            reserved_names=["ns1.dyn.example.com"],
        )
        self.successResultOf(defer.ensureDeferred(service.start()))
        failure = self.failureResultOf(service.add_user(User("ns1")), ValidationError)
        self.assertEqual(failure.value.field, "id")
        self.successResultOf(service.add_user(User("ns2")))

    def test_names_unique(self) -> None:
        self.failureResultOf(self.service.add_user(User("carol", hostnames=["alice.example.org"])), NameTaken)
        self.failureResultOf(self.service.add_user(User("alice")), UserExists)

    def test_edit_and_remove(self) -> None:
        """Edits re-index names; removal frees them and stops answers."""
        self.update("alice", "198.51.100.7")
        self.successResultOf(self.service.edit_user("alice", hostnames=["new.example.org"]))
        self.assertIsNone(self.served("alice.example.org"))
        self.assertEqual(self.served("new.example.org"), ("198.51.100.7",))
        self.successResultOf(self.service.remove_user("alice"))
        self.assertIsNone(self.served("alice.dyn.example.com"))
        self.assertIsNone(self.served("new.example.org"))
        self.failureResultOf(self.service.edit_user("alice", notes="x"), NoSuchUser)

    def test_users_at_address(self) -> None:
        """The address index lists the online users at an address."""
        self.update("alice", "198.51.100.7")
        self.update("bob", "198.51.100.7")
        at = self.service.registry.users_at
        self.assertEqual(at(V4("198.51.100.7")), {"alice", "bob"})
        self.successResultOf(self.service.set_offline("bob"))
        self.assertEqual(at(V4("198.51.100.7")), {"alice"})
        self.update("alice", "198.51.100.8")
        self.assertEqual(at(V4("198.51.100.7")), frozenset())


class ObserverAndPollTests(ServiceTestCase):
    def test_observers_see_changes(self) -> None:
        """Observers get one Change per committed change, with old and new state."""
        self.changes.clear()
        self.update("alice", "198.51.100.7")
        self.update("alice", "198.51.100.7")  # nochg: no event
        self.assertEqual(len(self.changes), 1)
        change = self.changes[0]
        self.assertEqual((change.user_id, change.source), ("alice", "update"))
        self.assertIsNone(change.old_state)
        assert change.new_state is not None
        self.assertEqual(str(change.new_state.ipv4), "198.51.100.7")

    def test_failing_observer_does_not_break_updates(self) -> None:
        def broken(change: Change) -> None:
            raise RuntimeError("observer bug")

        self.service.subscribe(broken)
        self.assertEqual(self.update("alice", "198.51.100.7").status, UpdateStatus.GOOD)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.served("alice.dyn.example.com"), ("198.51.100.7",))

    def test_poll_picks_up_other_writers(self) -> None:
        """Users and states written straight to the store appear after one poll."""
        self.successResultOf(self.store.add_user(User("carol")))
        self.successResultOf(self.store.save_state(HostState("carol", ipv4="192.0.2.3")))
        self.successResultOf(self.store.remove_user("bob"))
        self.assertIsNone(self.served("carol.dyn.example.com"))
        self.changes.clear()
        self.clock.advance(0.5)
        self.assertEqual(self.served("carol.dyn.example.com"), ("192.0.2.3",))
        self.assertNotIn("bob", self.service.registry.users)
        self.assertEqual({c.source for c in self.changes}, {"store"})
        self.changes.clear()
        self.clock.advance(0.5)
        self.assertEqual(self.changes, [], "a second poll finds nothing new")

    def test_many_changes_applied_with_the_collector_paused(self) -> None:
        """
        A poll that brings many changes applies them all with the collector
        paused (none may start between the removals, users and states) and
        freezes what they made once, after; a few are applied as usual.
        """
        import gc

        from dyndns_plugin.service import core

        self.patch(core, "AT_ONCE", 2)
        frozen: list[int] = []
        self.patch(gc, "freeze", lambda: frozen.append(1))
        collecting: list[bool] = []
        self.service.subscribe(lambda change: collecting.append(gc.isenabled()))
        self.clock.advance(0.5)  # what the set-up wrote, seen
        self.assertTrue(gc.isenabled())
        for count, paused in ((1, False), (3, True)):
            collecting.clear()
            for k in range(count):
                self.successResultOf(self.store.add_user(User(f"u{count}-{k}")))
                self.successResultOf(self.store.save_state(HostState(f"u{count}-{k}", ipv4="192.0.2.3")))
            self.clock.advance(0.5)
            self.assertEqual(collecting, [not paused] * 2 * count)
            self.assertEqual(len(frozen), int(paused))
            self.assertTrue(gc.isenabled())

    def test_import(self) -> None:
        self.successResultOf(
            self.service.import_users([User("carol"), User("dave")], [HostState("dave", ipv6="2001:db8::d")])
        )
        self.assertEqual(self.served("dave.dyn.example.com"), ("2001:db8::d",))
        self.assertEqual(self.served("carol.dyn.example.com"), ())


class StartTests(SynchronousTestCase):
    def test_loads_everything_at_start(self) -> None:
        """A new service serves what the store holds, and is not ready before."""
        store = MemoryUserStore()
        self.successResultOf(store.add_user(User("alice", disabled=True)))
        self.successResultOf(store.add_user(User("bob")))
        self.successResultOf(store.save_state(HostState("bob", ipv4="192.0.2.2", ttl=99)))
        service = DynDNSService(store, "dyn.example.com", clock=task.Clock(), poll_interval=None)
        self.assertFalse(service.registry.loaded)
        self.successResultOf(defer.ensureDeferred(service.start()))
        self.assertTrue(service.registry.loaded)
        answer = service.registry.answer("bob.dyn.example.com")
        assert answer is not None
        self.assertEqual(([str(a) for a in answer.addresses], answer.ttl), (["192.0.2.2"], 99))
        self.assertIsNone(service.registry.answer("alice.dyn.example.com"))


class OneUserStartTests(SynchronousTestCase):
    """A CLI command about one user loads that user only, and writes through the same checks."""

    def setUp(self) -> None:
        self.store = MemoryUserStore()
        self.successResultOf(self.store.add_user(User("alice", hostnames=["home.example.net"])))
        self.successResultOf(self.store.add_user(User("bob")))
        self.successResultOf(self.store.save_state(HostState("bob", ipv4="192.0.2.2")))

        def no_full_load() -> defer.Deferred[None]:
            raise AssertionError("the whole store was read")

        self.store.load = no_full_load  # type: ignore[method-assign,assignment]

    def start(self, user_id: str) -> DynDNSService:
        service = DynDNSService(self.store, "dyn.example.com", clock=task.Clock(), poll_interval=None)
        self.successResultOf(defer.ensureDeferred(service.start(only_users=[user_id])))
        return service

    def test_only_that_user(self) -> None:
        service = self.start("bob")
        self.assertEqual(set(service.registry.users), {"bob"})
        self.assertEqual(service.registry.state("bob"), HostState("bob", ipv4="192.0.2.2"))
        self.successResultOf(service.update("bob", [ipaddress.ip_address("192.0.2.3")]))
        self.assertEqual(self.store._states["bob"].ipv4, ipaddress.ip_address("192.0.2.3"))

    def test_the_stores_checks_still_apply(self) -> None:
        """Existing ids and names taken by users not loaded are refused by the store."""
        service = self.start("carol")
        self.assertEqual(len(service.registry.users), 0)
        self.failureResultOf(service.add_user(User("alice")), UserExists)
        self.failureResultOf(service.add_user(User("carol", hostnames=["home.example.net"])), NameTaken)
        self.successResultOf(service.add_user(User("carol")))
        self.assertIn("carol", self.store._users)


class GatedStore(MemoryUserStore):
    """A memory store whose state saves and imports wait for the test (L{release})."""

    def __init__(self) -> None:
        super().__init__()
        self.gated = False
        self.calls: list[str] = []
        self.pending: list[defer.Deferred[None]] = []

    def _later(self, name: str, write):  # type: ignore[no-untyped-def]
        self.calls.append(name)
        if not self.gated:
            return write()
        gate: defer.Deferred[None] = defer.Deferred()
        gate.addCallback(lambda _: write())
        self.pending.append(gate)
        return gate

    def save_state(self, state: HostState, expected: Any = ANY_STATE) -> defer.Deferred[None]:
        return self._later("save_state", lambda: super(GatedStore, self).save_state(state, expected))

    def import_users(self, users, states, remove=()):  # type: ignore[no-untyped-def]
        return self._later("import_users", lambda: super(GatedStore, self).import_users(users, states, remove))

    def release(self) -> None:
        pending, self.pending = self.pending, []
        for gate in pending:
            gate.callback(None)


class BulkOrderTests(SynchronousTestCase):
    """
    Admin bulk writes (import, replace) run in the turn of every user they
    touch, like every other write: none interleaves with a concurrent
    update of the same user.
    """

    def setUp(self) -> None:
        self.store = GatedStore()
        self.service = DynDNSService(self.store, "dyn.example.com", clock=task.Clock(), poll_interval=None)
        self.successResultOf(defer.ensureDeferred(self.service.start()))
        self.successResultOf(self.service.add_user(User("alice")))
        self.successResultOf(self.service.add_user(User("bob")))
        self.store.calls.clear()
        self.store.gated = True

    def served(self, name: str) -> tuple[str, ...] | None:
        answer = self.service.registry.answer(name)
        return None if answer is None else tuple(str(a) for a in answer.addresses)

    def test_import_waits_for_a_running_update(self) -> None:
        update = self.service.update("alice", [ipaddress.ip_address("198.51.100.7")])
        imported = self.service.import_users([User("alice")], [HostState("alice", ipv4="192.0.2.99")])
        self.assertEqual(self.store.calls, ["save_state"], "the import waits for alice's update")
        self.assertNoResult(imported)
        self.store.release()
        self.assertEqual(self.successResultOf(update).status, UpdateStatus.GOOD)
        self.assertEqual(self.store.calls, ["save_state", "import_users"])
        self.assertEqual(self.served("alice.dyn.example.com"), ("198.51.100.7",))
        self.store.release()
        self.successResultOf(imported)
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.99",))
        self.assertEqual(self.successResultOf(self.store.load()).states["alice"].ipv4, V4("192.0.2.99"))

    def test_update_waits_for_a_running_import(self) -> None:
        imported = self.service.import_users([User("alice")], [HostState("alice", ipv4="192.0.2.99")])
        update = self.service.update("alice", [ipaddress.ip_address("192.0.2.99")])
        self.assertEqual(self.store.calls, ["import_users"])
        self.assertNoResult(update)
        self.store.release()
        self.successResultOf(imported)
        # The update builds on the imported state: nothing to change.
        self.assertEqual(self.successResultOf(update).status, UpdateStatus.NOCHG)
        self.assertEqual(self.store.calls, ["import_users"])

    def test_other_users_do_not_wait(self) -> None:
        imported = self.service.import_users([User("alice")], [HostState("alice", ipv4="192.0.2.99")])
        update = self.service.update("bob", [ipaddress.ip_address("198.51.100.8")])
        self.assertEqual(self.store.calls, ["import_users", "save_state"])
        self.store.release()
        self.successResultOf(imported)
        self.assertEqual(self.successResultOf(update).status, UpdateStatus.GOOD)

    def test_replace_waits_for_the_users_it_removes(self) -> None:
        update = self.service.update("bob", [ipaddress.ip_address("198.51.100.8")])
        replaced = self.service.replace_users([User("alice")])
        self.assertEqual(self.store.calls, ["save_state"], "the replace waits for bob's update")
        self.store.release()
        self.assertEqual(self.successResultOf(update).status, UpdateStatus.GOOD)
        self.store.release()
        self.successResultOf(replaced)
        self.assertNotIn("bob", self.service.registry.users)
        self.assertNotIn("bob", self.successResultOf(self.store.load()).users)
