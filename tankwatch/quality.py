"""Central quality checks applied to every batch before it enters the bus."""

from __future__ import annotations

import numpy as np

from tankwatch.config import Site
from tankwatch.records import Quality, ReadingBatch


class RangeCheck:
    """Marks non-finite values bad and values outside the instrument range out-of-range."""

    def __init__(self, site: Site) -> None:
        self.low = np.array([s.sensor.range[0] for s in site.sensors], dtype=np.float64)
        self.high = np.array([s.sensor.range[1] for s in site.sensors], dtype=np.float64)

    def __call__(self, batch: ReadingBatch) -> ReadingBatch:
        """The batch with quality downgraded where the value cannot be trusted; good rows only are touched."""
        good = batch.quality == Quality.GOOD
        if not good.any():
            return batch
        value = batch.value
        quality = batch.quality.copy()
        finite = np.isfinite(value)
        quality[good & ~finite] = Quality.BAD
        with np.errstate(invalid="ignore"):
            outside = (value < self.low[batch.sensor]) | (value > self.high[batch.sensor])
        quality[good & finite & outside] = Quality.OUT_OF_RANGE
        return ReadingBatch(batch.sensor, batch.ts_ms, value, quality)
