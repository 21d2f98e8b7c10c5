"""`tankwatch bench historian` on a small feed: every point reaches a private VictoriaMetrics through the historian,
and the figure comes with the server's own intake of the same requests as its baseline."""

from __future__ import annotations

from bench.historian import run_historian_bench


def test_every_point_is_written_and_measured_beside_the_servers_intake() -> None:
    result = run_historian_bench(points=20_000, per_write=10_000, say=lambda _m: None)
    assert result["points"] == result["written"] == 20_000 and result["buffered"] == 0
    assert result["points_per_s"] > 0 and len(result["baseline"]["before_and_after"]) == 2
    share = result["points_per_s"] / result["baseline"]["points_per_s"]
    assert abs(result["of_server_intake"] - share) < 0.01
