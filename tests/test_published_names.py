"""PublishedNames: a mapping like a dict, whose snapshots later writes do not change."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.model import HostState
from dyndns_plugin.registry import AnswerSource
from dyndns_plugin.replication import names as names_module
from dyndns_plugin.replication.names import PublishedNames, StagedChanges

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


class StagedChangesTests(SynchronousTestCase):
    @given(
        st.dictionaries(st.sampled_from(NAMES), st.integers(0, 1000)),
        st.dictionaries(st.sampled_from(NAMES), st.one_of(st.none(), st.integers(0, 1000))),
        st.integers(0, 120),
        st.one_of(st.none(), st.tuples(st.sampled_from(NAMES), st.integers(0, 1000))),
        st.booleans(),
    )
    def test_all_at_once_at_commit(
        self,
        before: dict[str, int],
        changes: dict[str, int | None],
        stop: int,
        meanwhile: tuple[str, int] | None,
        snap: bool,
    ) -> None:
        """
        Staged changes leave the names as they were until L{commit}, which
        gives what setting them one by one gives; a snapshot taken while
        they are built keeps the old names; a write meanwhile (not the
        publisher's way, but possible) is kept, the staged values win.
        """
        self.patch(names_module, "_COPY_STEP", 1)  # copies across many steps: interleavings mid-copy too
        names = PublishedNames(SUFFIX)
        for name, n in before.items():
            names[name] = source(n)
        sources: dict[str, AnswerSource | None] = {
            name: None if n is None else source(n) for name, n in changes.items()
        }
        staged = StagedChanges(names, sources)
        steps = staged.build()
        for _ in zip(range(stop), steps):
            pass
        snapshot = names.snapshot() if snap else None
        expected: dict[str, AnswerSource] = {name: source(n) for name, n in before.items()}
        self.assertEqual(dict(names.items()), expected)
        if meanwhile is not None:
            names[meanwhile[0]] = expected[meanwhile[0]] = source(meanwhile[1])
        for _ in steps:
            pass
        staged.commit()
        list(staged.release())
        for name, value in sources.items():
            if value is None:
                expected.pop(name, None)
            else:
                expected[name] = value
        self.assertEqual(dict(names.items()), expected)
        self.assertEqual(len(names), len(expected))
        if snapshot is not None:
            self.assertEqual(dict(snapshot.items()), {name: source(n) for name, n in before.items()})

    def test_commit_touches_only_the_changed_dicts(self) -> None:
        names = PublishedNames(SUFFIX)
        names.add_all([(f"user{n}", source(n)) for n in range(2000)], mains=True)
        shards = list(names._shards)
        staged = StagedChanges(names, {f"user7.{SUFFIX}": source(9999), f"user8.{SUFFIX}": None})
        list(staged.build())
        self.assertEqual(names._shards, shards)
        staged.commit()
        replaced = [i for i, (a, b) in enumerate(zip(names._shards, shards)) if a is not b]
        self.assertLessEqual(len(replaced), 2)
        self.assertEqual(names[f"user7.{SUFFIX}"], source(9999))
        self.assertNotIn(f"user8.{SUFFIX}", names)
        self.assertEqual(len(names), 1999)

    def test_a_write_meanwhile_to_a_staged_dict_is_kept(self) -> None:
        """A dict already copied by the staging and then written in place would lose the write at commit."""
        names = PublishedNames(SUFFIX)
        names.add_all([(f"user{n}", source(n)) for n in range(2000)], mains=True)
        shard_of = {n: hash(f"user{n}") & 255 for n in range(2000)}
        other = next(n for n in range(1, 2000) if shard_of[n] == shard_of[0])
        staged = StagedChanges(names, {f"user0.{SUFFIX}": source(5000)})
        list(staged.build())
        names[f"user{other}.{SUFFIX}"] = source(6000)
        staged.commit()
        self.assertEqual(names[f"user0.{SUFFIX}"], source(5000))
        self.assertEqual(names[f"user{other}.{SUFFIX}"], source(6000))

    def test_a_write_in_the_middle_of_a_copy_is_kept(self) -> None:
        """A dict being copied a few entries a step is not changed under the copy: a write copies it first."""
        self.patch(names_module, "_COPY_STEP", 2)
        names = PublishedNames(SUFFIX)
        names.add_all([(f"user{n}", source(n)) for n in range(4000)], mains=True)
        index = hash("user0") & 255
        same_shard = [n for n in range(1, 4000) if hash(f"user{n}") & 255 == index]
        staged = StagedChanges(names, {f"user0.{SUFFIX}": source(5000)})
        steps = staged.build()
        next(steps)  # the first two entries of user0's dict copied
        self.assertIn(index, names._shared)
        names[f"user{same_shard[-1]}.{SUFFIX}"] = source(6000)  # copied on write: the original stays
        for _ in steps:
            pass
        staged.commit()
        self.assertEqual(names[f"user0.{SUFFIX}"], source(5000))
        self.assertEqual(names[f"user{same_shard[-1]}.{SUFFIX}"], source(6000))
        self.assertEqual(len(names), 4000)


class PendingNamesTests(SynchronousTestCase):
    """The publisher's pending names: each once, held in bounded sets."""

    def test_each_name_once_across_chunks(self) -> None:
        from dyndns_plugin.replication.publisher import PendingNames

        self.patch(PendingNames, "CHUNK", 3)
        pending = PendingNames()
        self.assertFalse(pending)
        pending.update(["a", "b", "c", "d", "a", "e", "d", "f", "g"])
        pending.update(["c", "g", "h"])
        self.assertTrue(pending)
        self.assertEqual(sorted(pending), ["a", "b", "c", "d", "e", "f", "g", "h"])
        self.assertEqual(len(pending), 8)
        self.assertTrue(all(len(chunk) <= 3 for chunk in pending._chunks))
