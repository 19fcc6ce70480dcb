"""PublishedNames: a mapping like a dict, whose snapshots later writes do not change."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.model import HostState
from dyndns_plugin.registry import AnswerSource
from dyndns_plugin.replication.names import PublishedNames

SUFFIX = "dyn.example.com"
#: Main names (kept under the user id), other names below the suffix and
#: elsewhere, and one-label names (a zone apex such as "test").
NAMES = [f"user{n}.{SUFFIX}" for n in range(20)] + [
    f"www.user1.{SUFFIX}",
    SUFFIX,
    "example.com",
    "host.example.org",
    "test",
    "user1",
]


def source(n: int) -> HostState:
    return HostState(f"user{n}", ipv4=f"192.0.2.{n % 250 + 1}")


operations = st.lists(
    st.tuples(st.sampled_from(["set", "del", "snapshot", "mains"]), st.sampled_from(NAMES), st.integers(0, 1000)),
    max_size=80,
)


class PublishedNamesTests(SynchronousTestCase):
    @given(operations)
    def test_behaves_like_a_dict_and_snapshots_stay_as_taken(self, ops: list[tuple[str, str, int]]) -> None:
        names, reference = PublishedNames(SUFFIX), {}
        snapshots: list[tuple[PublishedNames, dict[str, AnswerSource]]] = []
        for op, name, value in ops:
            if op == "set":
                names[name] = reference[name] = source(value)
            elif op == "mains":  # the fill's way: a user id stands for its main name
                names.add_all([(f"user{value % 20}", source(value))], mains=True)
                reference[f"user{value % 20}.{SUFFIX}"] = source(value)
            elif op == "del" and name in reference:
                del names[name], reference[name]
            elif op == "snapshot":
                snapshots.append((names.snapshot(), dict(reference)))
            self.assertEqual(len(names), len(reference))
        self.assertEqual(dict(names.items()), reference)
        self.assertEqual(names, reference)
        self.assertEqual(set(names), set(reference))
        for name in NAMES:
            self.assertEqual(name in names, name in reference, name)
            self.assertEqual(names.get(name), reference.get(name), name)
        for snapshot, then in snapshots:
            self.assertEqual(dict(snapshot.items()), then)

    def test_a_write_after_a_snapshot_copies_one_shard_only(self) -> None:
        names = PublishedNames(SUFFIX)
        names.add_all([(f"user{n}", source(n)) for n in range(2000)], mains=True)
        snapshot = names.snapshot()
        names[f"user7.{SUFFIX}"] = source(9999)
        copied = [i for i, (a, b) in enumerate(zip(names._shards, snapshot._shards)) if a is not b]
        self.assertEqual(len(copied), 1)
        self.assertEqual(snapshot[f"user7.{SUFFIX}"], source(7))
        self.assertEqual(names[f"user7.{SUFFIX}"], source(9999))

    def test_main_names_are_kept_under_the_users_own_id(self) -> None:
        user_id = "".join(["ali", "ce"])  # a string object of its own, as the registry's
        names = PublishedNames(SUFFIX)
        names.add_all([(user_id, source(1))], mains=True)
        (shard,) = [s for s in names._shards if s]
        (key,) = shard
        self.assertIs(key, user_id)
        self.assertEqual(list(names), [f"alice.{SUFFIX}"])
