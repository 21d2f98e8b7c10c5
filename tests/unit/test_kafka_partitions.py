"""Enterprises dealt onto partitions from a stable table, and partitions shared out by the load they carry."""

from __future__ import annotations

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from tankwatch.kafka_partitions import PartitionTable, enterprise_assignor, hashed_partition, share_partitions


def test_enterprises_are_dealt_round_robin_in_sorted_order() -> None:
    table = PartitionTable(["E3", "E1", "E2", "E4"], 3)
    assert table.of == {"E1": 0, "E2": 1, "E3": 2, "E4": 0}
    assert table.enterprises() == {0: frozenset({"E1", "E4"}), 1: frozenset({"E2"}), 2: frozenset({"E3"})}
    assert table.partition("not-an-enterprise") == hashed_partition("not-an-enterprise", 3)


def test_three_members_over_twelve_partitions_with_three_enterprises_each_get_one() -> None:
    weights = {0: (1, 40), 1: (1, 30), 2: (1, 50)}  # the demo park: enterprises on partitions 0..2
    shared = share_partitions(range(12), ["m-b", "m-a", "m-c"], weights)
    assert sorted(p for ps in shared.values() for p in ps) == list(range(12))
    assert sorted(sum(weights.get(p, (0, 0))[0] for p in ps) for ps in shared.values()) == [1, 1, 1]
    assert sorted(len(ps) for ps in shared.values()) == [4, 4, 4]


def test_heavier_partitions_are_spread_before_lighter_ones() -> None:
    weights = {0: (2, 20), 1: (1, 10), 2: (1, 10), 3: (1, 10)}
    shared = share_partitions(range(4), ["a", "b"], weights)
    loads = sorted(sum(weights[p][0] for p in ps) for ps in shared.values())
    assert loads == [2, 3]
    assert share_partitions(range(4), [], weights) == {}


class _Cluster:
    """The part of aiokafka's ClusterMetadata an assignor reads."""

    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)


def test_the_assignor_gives_a_member_the_same_partition_numbers_of_every_topic() -> None:
    assignor = enterprise_assignor({0: (1, 4), 1: (1, 4), 2: (1, 4)})
    assert assignor.name == "tankwatch-enterprises"
    topics = ["readings", "commands"]
    members = {m: ConsumerProtocolMemberMetadata(0, topics, b"") for m in ("x", "y", "z")}
    got = assignor.assign(_Cluster({t: set(range(6)) for t in topics}), members)  # type: ignore[arg-type]
    owned = {m: dict(a.assignment) for m, a in got.items()}
    for parts in owned.values():
        assert parts["readings"] == parts["commands"]
        assert len([p for p in parts["readings"] if p < 3]) == 1  # one enterprise each
    assert sorted(p for parts in owned.values() for p in parts["readings"]) == list(range(6))
