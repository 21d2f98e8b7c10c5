"""The streaming GC settings: applied in a fresh interpreter, since they are process-wide."""

import subprocess
import sys

PROBE = """
import gc
from tankwatch.gc_tuning import STREAMING_THRESHOLDS, tune_for_streaming
before = gc.get_freeze_count()
tune_for_streaming()
assert gc.get_threshold() == STREAMING_THRESHOLDS, gc.get_threshold()
assert gc.get_freeze_count() > before, "start-up objects were not frozen"
cycle = []
cycle.append(cycle)
del cycle
assert gc.collect() >= 1, "cyclic garbage made after tuning must still be collected"
print("ok")
"""


def test_tuning_freezes_start_up_objects_and_still_collects_cycles() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
