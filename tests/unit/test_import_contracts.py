"""The import contracts (pyproject ``[tool.importlinter]``) break on every kind of arrow issue 18 removed.

Each case copies the packages into a temporary folder, adds one deliberately bad module and runs ``lint-imports``
there: it must fail, naming the broken contract and the bad module. The untouched copy keeps every contract.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("tankwatch", "tankwatch_app", "ingest", "alarms", "simulators", "dashboard", "tiers", "bench", "tests")

FLOORS = "Floors: the composition root imports the stages"
STAGES_APART = "Stages apart"
SIMULATORS = "Simulators are wired only by the composition root's demo and scenario running"
BENCH = "Benchmarks import production code, never the reverse"
NO_TESTS = "Production code and benchmarks never import tests"
NO_CIRCLES = "No import circle"

# (bad modules and their source, the contract they break): one case per arrow of the issue, and one per contract.
CASES = [
    ({"tankwatch/bad_kafka_worker.py": "from alarms.evaluate import AlarmCore\n"}, FLOORS),  # the bus knew the core
    ({"tankwatch/stores/bad_events.py": "from alarms import grading\n"}, FLOORS),  # a store imported a stage
    ({"tankwatch/bad_runtime.py": "import tankwatch_app.runtime\n"}, FLOORS),  # the spine was the composition root
    ({"dashboard/bad_app.py": "from tankwatch_app import replay_control\n"}, FLOORS),  # half of the old circle
    ({"ingest/bad_adapter.py": "from alarms import rules\n"}, FLOORS),  # independent siblings on one floor
    ({"alarms/bad_worker.py": "from dashboard import live\n"}, FLOORS),  # the alarm stage under the dashboard
    ({"dashboard/bad_scenarios.py": "from simulators import scenario\n"}, STAGES_APART),
    ({"simulators/bad_feed.py": "from ingest.mqtt import payload\n"}, STAGES_APART),
    ({"tankwatch_app/bad_cli.py": "from simulators import park\n"}, SIMULATORS),
    ({"tankwatch_app/bad_replay_cli.py": "from bench import replay\n"}, BENCH),  # replay_cli → bench/replay.py
    ({"alarms/bad_cli.py": "from bench import alarm_core\n"}, BENCH),  # alarms/cli.py → bench/alarm_core.py
    ({"tankwatch/bad_sites.py": "from tests import sites\n"}, NO_TESTS),
    ({"tankwatch_app/bad_replay.py": "from tankwatch_app import bad_runtime\n",  # as replay ⇄ runtime were
      "tankwatch_app/bad_runtime.py": "from tankwatch_app import bad_replay\n"}, NO_CIRCLES),
]


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and pyproject.toml in a folder of their own."""
    folder = tmp_path_factory.mktemp("contracts")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", folder)
    return folder


def lint(folder: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` run in ``folder`` (its packages come first on the path), without the cache."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=folder, capture_output=True, text=True,
                          timeout=120)


def test_the_copy_as_it_is_keeps_every_contract(copy: Path) -> None:
    result = lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("modules", "contract"), CASES, ids=[next(iter(c[0])) for c in CASES])
def test_bad_modules_break_their_contract(copy: Path, modules: dict[str, str], contract: str) -> None:
    for path, source in modules.items():
        (copy / path).write_text(f'"""A deliberately bad module."""\n\n{source}', encoding="utf-8")
    try:
        result = lint(copy)
    finally:
        for path in modules:
            (copy / path).unlink()
    report = " ".join(result.stdout.split())  # rich wraps long lines
    assert result.returncode == 1, report
    broken = report[report.index("Broken contracts"):]
    assert contract in broken
    assert next(iter(modules)).removesuffix(".py").replace("/", ".") in broken
