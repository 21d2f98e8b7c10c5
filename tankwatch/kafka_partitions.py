"""Which partition carries which enterprise, and which alarm worker owns which partition.

Enterprises are dealt round-robin onto the partitions from a stable table (the site's enterprise ids, sorted), so
with at least as many partitions as enterprises each has a partition of its own. The group assignor
``tankwatch-enterprises`` then hands out partitions by the enterprises and sensors they carry, the heaviest first,
each to the member with the least so far: three workers over three enterprises own one each, whatever the
partition numbers. A partition number is assigned to one member for every subscribed topic (readings and commands
alike), so commands reach the worker evaluating their enterprise's readings.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata
from aiokafka.partitioner import murmur2

from tankwatch.config import Site

ASSIGNOR_NAME = "tankwatch-enterprises"


def hashed_partition(key: str, partitions: int) -> int:
    """Kafka's default keyed partitioner (murmur2, as in Java): for keys outside the table."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class PartitionTable:
    """Enterprise → partition for a topic of ``partitions`` partitions: sorted enterprise ids dealt round-robin."""

    def __init__(self, enterprise_ids: Iterable[str], partitions: int) -> None:
        self.partitions = partitions
        self.of = {e: i % partitions for i, e in enumerate(sorted(enterprise_ids))}

    def partition(self, key: str) -> int:
        """The partition of an enterprise's records (hashed when the key is no enterprise of the table)."""
        p = self.of.get(key)
        return hashed_partition(key, self.partitions) if p is None else p

    def enterprises(self) -> dict[int, frozenset[str]]:
        """Partition → the enterprises it carries (partitions carrying none are left out)."""
        out: dict[int, set[str]] = collections.defaultdict(set)
        for e, p in self.of.items():
            out[p].add(e)
        return {p: frozenset(es) for p, es in out.items()}


def partition_weights(site: Site, partitions: int) -> dict[int, tuple[int, int]]:
    """Partition → (enterprises, sensors) it carries under the site's table."""
    sensors = collections.Counter(s.enterprise_id for s in site.sensors)
    table = PartitionTable((e.id for e in site.enterprises), partitions)
    return {p: (len(es), sum(sensors[e] for e in es)) for p, es in table.enterprises().items()}


def share_partitions(partitions: Iterable[int], members: Iterable[str],
                     weights: Mapping[int, tuple[int, int]]) -> dict[str, list[int]]:
    """Partitions to members, the heaviest first, each to the member carrying the least (enterprises, sensors,
    partitions) so far, and partitions carrying nothing to the member with the fewest partitions; ties go to the
    member id first in order, so the result depends on nothing else."""
    load = {m: (0, 0, 0) for m in sorted(members)}
    out: dict[str, list[int]] = {m: [] for m in load}
    if not load:
        return out
    for p in sorted(partitions, key=lambda p: (tuple(-w for w in weights.get(p, (0, 0))), p)):
        enterprises, sensors = weights.get(p, (0, 0))
        if enterprises or sensors:
            member = min(load, key=lambda m: (load[m], m))
        else:
            member = min(load, key=lambda m: (load[m][2], m))
        e, s, n = load[member]
        load[member] = (e + enterprises, s + sensors, n + 1)
        out[member].append(p)
    return {m: sorted(ps) for m, ps in out.items()}


def enterprise_assignor(weights: Mapping[int, tuple[int, int]]) -> type[AbstractPartitionAssignor]:
    """The group assignor ``tankwatch-enterprises`` for partitions of these weights (from :func:`partition_weights`;
    only the group leader's is used, and every member reads the same site)."""
    frozen = dict(weights)

    class EnterpriseAssignor(AbstractPartitionAssignor):
        """Partitions by the enterprises they carry; one member per partition number across topics."""

        name = ASSIGNOR_NAME
        version = 0

        @classmethod
        def assign(cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
                   ) -> dict[str, ConsumerProtocolMemberAssignment]:
            topics = sorted({t for meta in members.values() for t in meta.subscription})
            numbers = set().union(*(cluster.partitions_for_topic(t) or set() for t in topics))
            owner = {p: m for m, ps in share_partitions(numbers, members, frozen).items() for p in ps}
            assignment: dict[str, dict[str, list[int]]] = {m: {} for m in members}
            for topic in topics:
                for p in sorted(cluster.partitions_for_topic(topic) or ()):
                    member = owner[p]
                    if topic in members[member].subscription:
                        assignment[member].setdefault(topic, []).append(p)
            return {m: ConsumerProtocolMemberAssignment(cls.version, sorted(a.items()), b"")
                    for m, a in assignment.items()}

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            return None

    return EnterpriseAssignor
