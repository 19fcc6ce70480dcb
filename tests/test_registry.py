"""The registry's bulk load indexes exactly like one write at a time."""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.model import HostState, User
from dyndns_plugin.registry import Registry


def _population() -> tuple[dict[str, User], dict[str, HostState]]:
    users = {
        u.id: u
        for u in (
            User(id="online4", hostnames=("a.example.org", "*.w.example.org")),
            User(id="online6"),
            User(id="both"),
            User(id="shared"),
            User(id="offline", offline_ipv4="192.0.2.99"),
            User(id="offline-none"),
            User(id="never", hostnames=("n.example.org",)),
            User(id="disabled", disabled=True, hostnames=("d.example.org",)),
            User(id="ttl-default"),
        )
    }
    states = {
        s.user_id: s
        for s in (
            HostState("online4", ipv4="192.0.2.1", ttl=60),
            HostState("online6", ipv6="2001:db8::6", ttl=60),
            HostState("both", ipv4="192.0.2.2", ipv6="2001:db8::2", ttl=30),
            HostState("shared", ipv4="192.0.2.2", ttl=30),
            HostState("offline", ipv4="192.0.2.3", offline=True),
            HostState("offline-none", ipv4="192.0.2.4", offline=True),
            HostState("disabled", ipv4="192.0.2.5"),
            HostState("ttl-default", ipv4="192.0.2.6"),
            HostState("gone", ipv4="192.0.2.7"),  # a state without its user
        )
    }
    return users, states


class LoadTests(SynchronousTestCase):
    def test_load_matches_writes(self) -> None:
        """Answers, names, wildcards and the address index agree with put_user + set_state."""
        users, states = _population()
        loaded, written = Registry("dyn.example.com", 120), Registry("dyn.example.com", 120)
        loaded.load(users, states)
        for user in users.values():
            written.put_user(user)
        for state in states.values():
            if written.has_user(state.user_id):
                written.set_state(state)
        self.assertEqual(dict(loaded.users), dict(written.users))
        self.assertEqual(dict(loaded.states), dict(written.states))
        self.assertNotIn("gone", loaded.states)
        names = [f"{u.id}.dyn.example.com" for u in users.values()] + [
            "a.example.org",
            "x.w.example.org",
            "d.example.org",
        ]
        names += ["n.example.org", "unknown.dyn.example.com"]
        for name in names:
            self.assertEqual(loaded.answer(name), written.answer(name), name)
        self.assertEqual(loaded.answer("both.dyn.example.com").ttl, 30)  # type: ignore[union-attr]
        self.assertEqual(loaded.answer("ttl-default.dyn.example.com").ttl, 120)  # type: ignore[union-attr]
        self.assertIsNone(loaded.answer("d.example.org"))
        for text in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.5", "2001:db8::6"):
            address = ipaddress.ip_address(text)
            self.assertEqual(loaded.users_at(address), written.users_at(address), text)
        self.assertEqual(loaded.users_at(ipaddress.ip_address("192.0.2.2")), {"both", "shared"})

    def test_load_then_writes(self) -> None:
        """A loaded registry takes later writes like any other: the shared address index splits again."""
        users, states = _population()
        registry = Registry("dyn.example.com", 120)
        registry.load(users, states)
        registry.set_state(HostState("shared", ipv4="192.0.2.8", ttl=30))
        self.assertEqual(registry.users_at(ipaddress.ip_address("192.0.2.2")), {"both"})
        registry.remove_user("both")
        self.assertEqual(registry.users_at(ipaddress.ip_address("192.0.2.2")), frozenset())
        self.assertIsNone(registry.answer("both.dyn.example.com"))


class CountTests(SynchronousTestCase):
    """Users by state, kept with every write, always what a full count gives."""

    def assertCounts(self, registry: Registry) -> None:
        expected = dict.fromkeys(("online", "offline", "never", "disabled"), 0)
        for user_id, user in registry.users.items():
            state = registry.states.get(user_id)
            if user.disabled:
                expected["disabled"] += 1
            elif state is None:
                expected["never"] += 1
            else:
                expected[state.status] += 1
        self.assertEqual(registry.counts_by_state(), expected)

    def test_load(self) -> None:
        users, states = _population()
        registry = Registry("dyn.example.com", 120)
        registry.load(users, states)
        self.assertEqual(registry.counts_by_state(), {"online": 5, "offline": 2, "never": 1, "disabled": 1})
        self.assertCounts(registry)

    def test_every_write(self) -> None:
        """Each kind of write moves a user between states, and a removal or a state alone is counted right."""
        users, states = _population()
        registry = Registry("dyn.example.com", 120)
        registry.load(users, states)
        writes = [
            lambda: registry.set_state(HostState("never", ipv4="192.0.2.50")),
            lambda: registry.set_state(HostState("online4", ipv4="192.0.2.1", offline=True)),
            lambda: registry.set_state(HostState("offline", ipv4="192.0.2.3")),
            lambda: registry.put_user(User(id="both", disabled=True)),
            lambda: registry.put_user(User(id="disabled")),
            lambda: registry.remove_user("shared"),
            lambda: registry.remove_user("no-such-user"),
            lambda: registry.set_state(HostState("orphan", ipv4="192.0.2.60")),  # no such user: not counted
            lambda: registry.put_user(User(id="orphan")),  # now counted with that state
            lambda: registry.put_user(User(id="fresh")),
            lambda: registry.set_state(HostState("online6", ttl=5)),  # no address: never
        ]
        for write in writes:
            write()
            self.assertCounts(registry)
        self.assertEqual(registry.counts_by_state()["online"], 5)  # never, offline, orphan, disabled in; 3 out


class OrderTests(SynchronousTestCase):
    """User ids in order, kept through loads, additions and removals, for paging."""

    def test_pages(self) -> None:
        users, states = _population()
        registry = Registry("dyn.example.com", 120)
        registry.load(dict(reversed(users.items())), states)
        expected = sorted(users)
        self.assertEqual(registry.ids_after(None, 100), expected)
        self.assertEqual(registry.ids_after(None, 3), expected[:3])
        self.assertEqual(registry.ids_after(expected[2], 3), expected[3:6])
        self.assertEqual(registry.ids_after("c", 2), [i for i in expected if i > "c"][:2])  # not an id itself
        self.assertEqual(registry.ids_after(expected[-1], 3), [])
        registry.put_user(User(id="aaa"))
        registry.put_user(User(id="online4", notes="changed"))  # not added twice
        registry.remove_user("never")
        registry.remove_user("never")
        expected = sorted({*expected, "aaa"} - {"never"})
        self.assertEqual(registry.ids_after(None, 100), expected)
        self.assertEqual(registry.ids_after(None, 100), sorted(registry.users))

    def test_many_additions(self) -> None:
        """Ids added in bulk (an import: more than are put in place one by one) come out in order,
        with removals and re-additions between the reads, and nothing added twice."""
        registry = Registry("dyn.example.com", 120)
        registry.load({"m0": User(id="m0")}, {})
        added = [f"u{i}" for i in range(500)]  # u1, u2, ... u10: not in string order
        for user_id in added:
            registry.put_user(User(id=user_id))
        registry.put_user(User(id="u7", notes="again"))  # already there
        registry.remove_user("u42")  # while the others wait to be merged
        expected = sorted({"m0", *added} - {"u42"})
        self.assertEqual(registry.ids_after(None, 1000), expected)
        self.assertEqual(registry.ids_after("u2", 3), [i for i in expected if i > "u2"][:3])
        for user_id in ("a", "u42", "zz"):  # a few: put in place one by one
            registry.put_user(User(id=user_id))
        registry.remove_user("m0")
        expected = sorted({*expected, "a", "u42", "zz"} - {"m0"})
        self.assertEqual(registry.ids_after(None, 1000), expected)
        self.assertEqual(registry.ids_after(None, 1000), sorted(registry.users))
