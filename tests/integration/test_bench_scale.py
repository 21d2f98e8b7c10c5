"""`tankwatch bench scale` on small sizes: each size's pipeline process takes every reading through alarms and the
store, the figures come from what it measured, and the plot is a PNG."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scale import growth, layout, run_scale_bench, sweeps_for


def test_small_sizes_go_through_and_are_plotted(tmp_path: Path) -> None:
    plot = tmp_path / "scale.png"
    result = run_scale_bench((1_000, 2_000), plot, say=lambda _m: None, min_points=20_000)
    rows = result["rows"]
    assert [(r["sensors"], r["sweeps"], r["points"]) for r in rows] == [(1_000, 20, 20_000), (2_000, 10, 20_000)]
    for row in rows:
        assert row["cpu_us_per_point"] > 0 and row["points_per_s"] > 0
        # the site model is part of what the pipeline holds per sensor
        assert 0 < row["site_bytes_per_sensor"] < row["rss_bytes_per_sensor"]
    assert result["cpu_growth_exponent"] == growth(rows, "cpu_us_per_point")
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and result["plot"] == str(plot)


def test_sizes_split_into_enterprises_of_ten_thousand() -> None:
    assert layout(1_000) == (1, 1_000) and layout(1_000_000) == (100, 10_000)
    with pytest.raises(ValueError, match="multiple"):
        layout(15_000)
    assert sweeps_for(1_000) == 1_000 and sweeps_for(1_000_000) == 2
