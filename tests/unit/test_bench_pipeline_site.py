"""The pipeline benchmark's park puts each enterprise on a partition of its own, so worker counts compare fairly."""

from __future__ import annotations

from pathlib import Path

from bench.pipeline import ENTERPRISES, PARTITIONS, bench_site, enterprise_ids
from tankwatch.kafka_partitions import PartitionTable


def test_every_enterprise_has_a_partition_of_its_own(tmp_path: Path) -> None:
    ids = enterprise_ids()
    assert len(ids) == ENTERPRISES == PARTITIONS
    table = PartitionTable(ids, PARTITIONS)
    assert sorted(table.partition(e) for e in ids) == list(range(PARTITIONS))
    site = bench_site(tmp_path, 1883, "t")
    assert [e.id for e in site.enterprises] == ids and site.file.bus.partitions == PARTITIONS
