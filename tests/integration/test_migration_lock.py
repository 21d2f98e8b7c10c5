"""Migrations one process at a time: stages that start together on a new database do not both create its tables."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from tankwatch.migrations import current, head, upgrade
from tankwatch.migrations.lock import migrating


def test_a_second_process_migrates_only_once_the_first_is_done(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    spawn = multiprocessing.get_context("spawn")
    with migrating(url):  # as a stage migrating right now
        others = [spawn.Process(target=upgrade, args=(url,)) for _ in range(3)]
        for process in others:
            process.start()
        time.sleep(1.5)
        assert all(p.is_alive() for p in others)  # waiting for the lock, not creating tables meanwhile
        assert current(url) is None
    for process in others:
        process.join(60)
    assert [p.exitcode for p in others] == [0, 0, 0]  # the first migrated, the others found nothing to do
    assert current(url) == head()
