"""``tankwatch bench …``: every benchmark command, each importing its ``bench`` module only when it runs.

The only production module that imports ``bench``: benchmarks depend on production code, never the reverse, and a
deployment without the ``bench`` folder (the container image) still runs every other command.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

PEER_MESSAGE_SIZES = (50, 200, 1000)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:  # noqa: ARG001 - benchmarks only
    """Add the benchmarks to ``tankwatch bench``."""

    @bench_app.command("pipeline")
    def bench_pipeline(
        bus: Annotated[str, typer.Option(help="memory, kafka (starts tansu) or kafka://HOST:PORT")] = "memory",
        rate: Annotated[float, typer.Option(help="Points/s offered for the latency run")] = 10_000,
        seconds: Annotated[float, typer.Option(help="Length of each run")] = 10.0,
        workers: Annotated[str, typer.Option(
            help="Kafka: alarm worker processes, or a comma-separated list of counts each measured in turn (1,2)")
        ] = "1",
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    ) -> None:
        """MQTT in → alarms → stores: sustained points/s, and publish → websocket alarm latency p50/p99."""
        from bench.pipeline import PARTITIONS, run_pipeline_bench

        try:
            counts = tuple(int(n) for n in workers.split(","))
        except ValueError:
            raise typer.BadParameter(f"expected counts like 1,2, got {workers!r}", param_hint="--workers") from None
        if not all(1 <= n <= PARTITIONS for n in counts):
            raise typer.BadParameter(f"each count must be 1..{PARTITIONS} (the bench's partitions)",
                                     param_hint="--workers")
        if bus == "memory" and counts != (1,):
            raise typer.BadParameter("alarm worker processes need a Kafka bus (--bus kafka)", param_hint="--workers")
        result = asyncio.run(run_pipeline_bench(bus=bus, rate=rate, seconds=seconds, workers=counts,
                                                say=(lambda _m: None) if as_json else typer.echo))
        typer.echo(json.dumps(result) if as_json else _table(result))

    @bench_app.command("historian")
    def bench_historian(
        url: Annotated[str | None, typer.Option(help="Line-protocol server (default: start victoria-metrics)")] = None,
        points: Annotated[int, typer.Option(help="Points to write")] = 500_000,
        per_write: Annotated[int, typer.Option(help="Readings per write (what one fetch from the bus drains)",
                                               min=1)] = 50_000,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    ) -> None:
        """Points/s through the historian (line protocol, 5,000-line gzip batches) to an InfluxDB-protocol server."""
        from bench.historian import run_historian_bench

        result = run_historian_bench(url=url, points=points, per_write=per_write,
                                     say=(lambda _m: None) if as_json else typer.echo)
        typer.echo(json.dumps(result) if as_json else _table(result))

    @bench_app.command("replay")
    def bench_replay(
        json_out: Annotated[bool, typer.Option("--json", help='Print {"speedup", "readings_per_s"} only')] = False,
        sensors: Annotated[int, typer.Option(help="Sensors in the synthetic park")] = 10_000,
        duration: Annotated[float, typer.Option(help="Seconds of feed time at 1 Hz")] = 3600.0,
        grading: Annotated[bool, typer.Option(help="Include the grading stage when it is there")] = True,
        grade_every: Annotated[float, typer.Option(help="Grade every so many seconds of feed time")] = 60.0,
    ) -> None:
        """One hour of a 10,000-sensor park at 1 Hz through the replay pipeline: speed-up over real time."""
        from bench.replay import run_bench

        if not (sensors > 0 and duration > 0 and grade_every > 0):
            typer.echo("--sensors, --duration and --grade-every must be positive", err=True)
            raise typer.Exit(1)
        result = run_bench(sensors=sensors, duration_s=duration, grading=grading, grade_every_s=grade_every)
        if json_out:
            typer.echo(json.dumps({"speedup": result.speedup, "readings_per_s": result.readings_per_s}))
            return
        typer.echo(result.report())

    @bench_app.command("peers")
    def peers(
        points_per_message: Annotated[int, typer.Option(help="Points per MQTT message: 50, 200 or 1000")] = 200,
        points: Annotated[int, typer.Option(min=1, help="Points in the feed")] = 3_000_000,
        sensors: Annotated[int, typer.Option(min=1, help="Sensors in the feed")] = 10_000,
        seed: Annotated[int, typer.Option(help="Feed random seed")] = 0,
        timeout: Annotated[float, typer.Option(help="Seconds each system may take")] = 600.0,
        bus: Annotated[str, typer.Option(help="mqtt: Node-RED over Mosquitto; kafka: Quix Streams over tansu")
                       ] = "mqtt",
        as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON summary")] = False,
    ) -> None:
        """A peer vs tankwatch on one feed: points/s and their ratio. ``--bus mqtt``: Node-RED 4 (npm, scratch
        folder) vs MQTT ingest + alarm core; ``--bus kafka``: Quix Streams (pip, a venv of its own) vs the Kafka
        source + alarm core, both consuming one seeded topic.

        Exit 1 when either system missed a point or the limit-transition counts disagree.
        """
        if points_per_message not in PEER_MESSAGE_SIZES:
            sizes = ", ".join(map(str, PEER_MESSAGE_SIZES))
            raise typer.BadParameter(f"must be one of {sizes}, got {points_per_message}",
                                     param_hint="--points-per-message")
        if bus not in ("mqtt", "kafka"):
            raise typer.BadParameter(f"must be mqtt or kafka, got {bus!r}", param_hint="--bus")
        if bus == "kafka":
            from bench.peers.kafka_run import run_kafka_peers as run_peers
        else:
            from bench.peers.run import run_peers
        log = (lambda _msg: None) if as_json else (lambda msg: typer.echo(msg, err=True))
        try:
            result = run_peers(points_per_message, points, sensors, seed, timeout, log=log)
        except (RuntimeError, TimeoutError, OSError) as exc:
            typer.echo(f"bench peers failed: {exc}", err=True)
            raise typer.Exit(2) from None
        problems = result.problems()
        if as_json:
            typer.echo(json.dumps(result.as_json()))
        else:
            tw, nr = result.tankwatch, result.peer
            typer.echo(f"{result.points} points, {result.sensors} sensors, {points_per_message} points/message, "
                       f"{result.expected_transitions} limit transitions in the feed")
            typer.echo(f"  {nr.name:12s} {nr.points_per_s / 1e6:6.2f} M points/s  ({nr.points} points, "
                       f"{nr.transitions} transitions, {nr.seconds:.2f} s; "
                       f"feed published in {nr.publish_seconds:.2f} s)")
            typer.echo(f"  {'tankwatch':12s} {tw.points_per_s / 1e6:6.2f} M points/s  ({tw.points} points, "
                       f"{tw.transitions} transitions, {tw.seconds:.2f} s; "
                       f"feed published in {tw.publish_seconds:.2f} s; "
                       f"{tw.evaluate_seconds or 0:.2f} s inside the alarm core)")
            typer.echo(f"  ratio tankwatch / {nr.name}: {result.ratio:.2f}")
        for problem in problems:
            typer.echo(f"MISMATCH: {problem}", err=True)
        if problems:
            raise typer.Exit(1)

    @bench_app.command("mqtt-burst")
    def mqtt_burst(
        messages: Annotated[int, typer.Option(min=1, help="Messages (one reading each) to publish")] = 300_000,
        detectors: Annotated[int, typer.Option(min=1, help="Gas detectors, publishing in turn")] = 10_000,
        rate: Annotated[float, typer.Option(min=0, help="Messages per second (0: as fast as possible)")] = 30_000,
        timeout: Annotated[float, typer.Option(help="Seconds each run may take")] = 300.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON summary")] = False,
    ) -> None:
        """Mosquitto defaults (baseline) vs deploy/mosquitto/mosquitto.conf: received, lost, dropped by the broker,
        missing by the detectors' counters, readings/s. Exit 1 when the deployed settings lost a message."""
        from bench.mqtt_burst import run_mqtt_burst

        log = (lambda _msg: None) if as_json else (lambda msg: typer.echo(msg, err=True))
        try:
            runs = run_mqtt_burst(detectors, messages, rate or None, timeout, log)
        except (RuntimeError, TimeoutError, OSError) as exc:
            typer.echo(f"bench mqtt-burst failed: {exc}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps({"messages": messages, "detectors": detectors, "rate": rate,
                                   "runs": [r.as_json() for r in runs]}))
        else:
            typer.echo(f"{messages} single-reading QoS 1 messages from {detectors} detectors, "
                       f"{f'{rate:,.0f}/s offered' if rate else 'as fast as possible'}")
            for r in runs:
                typer.echo(f"  {r.broker:9} received {r.received:>8} ({r.received / r.sent:6.1%}), lost {r.lost:>7}; "
                           f"broker dropped {r.broker_dropped:>7}, counter gaps {r.sequence_gaps:>7}; "
                           f"{r.received_per_s:>8,.0f} readings/s "
                           f"(publish {r.publish_s:.2f} s, ingest {r.ingest_s:.2f} s)")
        if runs[-1].lost:
            typer.echo(f"LOSS: the deployed settings lost {runs[-1].lost} messages", err=True)
            raise typer.Exit(1)

    @bench_app.command("uplink")
    def bench_uplink(
        points: Annotated[int, typer.Option(min=1, help="Points for the throughput run")] = 200_000,
        records_per_message: Annotated[int, typer.Option(min=1, max=10_000, help="Points per message")] = 1000,
        outage: Annotated[float, typer.Option(min=1, help="Seconds the receiver is down (past the sender's 30-s live "
                                                          "window, what queued early drains as backlog)")] = 40.0,
        snapshots_per_s: Annotated[float, typer.Option(min=0.1, help="Demo-park snapshots queued per second "
                                                                     "during the outage")] = 10.0,
        drain_per_s: Annotated[float, typer.Option(min=1, help="The sender's backlog rate (messages/s)")] = 20.0,
        timeout: Annotated[float, typer.Option(help="Seconds each phase may take")] = 300.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    ) -> None:
        """Points/s through the uplink and a receiver process (SM4 over HTTP); the backlog's drain after the receiver
        was killed; messages lost and doubled (exit 1 unless both are 0)."""
        from bench.uplink import run_uplink_bench

        try:
            result = asyncio.run(run_uplink_bench(points, records_per_message, outage, snapshots_per_s, drain_per_s,
                                                  timeout, (lambda _m: None) if as_json else typer.echo))
        except (RuntimeError, TimeoutError, OSError) as exc:
            typer.echo(f"bench uplink failed: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(json.dumps(result) if as_json else _table(result))
        if result["lost"] or result["doubled"]:
            raise typer.Exit(1)

    @bench_app.command("scale")
    def bench_scale(
        sizes: Annotated[str, typer.Option(help="sensor counts, comma-separated (below 10,000 or multiples of it)")]
        = "1000,10000,100000,1000000",
        plot: Annotated[Path | None, typer.Option(help="write the growth plot here (PNG)")] = Path("bench-scale.png"),
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    ) -> None:
        """The pipeline at growing sensor counts: CPU µs per point and resident memory per sensor, and a plot."""
        from bench.scale import layout, run_scale_bench

        try:
            counts = tuple(int(n) for n in sizes.split(","))
            for n in counts:
                if n < 1:
                    raise ValueError(f"{n} sensors")
                layout(n)
        except ValueError as exc:
            raise typer.BadParameter(f"{sizes!r}: {exc}", param_hint="--sizes") from None
        result = run_scale_bench(counts, plot, say=(lambda _m: None) if as_json else typer.echo)
        if as_json:
            typer.echo(json.dumps(result))
            return
        for row in result["rows"]:
            typer.echo(f"{row['sensors']:>9,} sensors: {row['cpu_us_per_point']:6.2f} CPU µs/point, "
                       f"{row['points_per_s']:>9,} points/s, {row['rss_bytes_per_sensor']:>7,} B/sensor resident "
                       f"(site model {row['site_bytes_per_sensor']:,}), growth over the run "
                       f"{row['rss_growth_bytes'] / 2**20:+.1f} MiB")
        typer.echo(f"growth exponents (cost ∝ sensors^k): CPU per point {result['cpu_growth_exponent']}, "
                   f"memory per sensor {result['memory_growth_exponent']}")
        if "plot" in result:
            typer.echo(f"plot: {result['plot']}")

    @bench_app.command("alarm-core")
    def bench_alarm_core(
        sensors: Annotated[int, typer.Option(min=42, help="sensors in the park (whole sources of 42)")] = 10_000,
        readings: Annotated[int, typer.Option(min=1, help="readings in the stream")] = 5_000_000,
        batch: Annotated[int, typer.Option(min=1, help="readings per evaluated batch")] = 200_000,
        oracle_readings: Annotated[
            int, typer.Option(min=1000, help="about this many readings go to the (slow) oracle")
        ] = 100_000,
        seed: Annotated[int, typer.Option(help="random seed of the synthetic stream")] = 1,
        as_json: Annotated[bool, typer.Option("--json", help="print only the JSON figures")] = False,
    ) -> None:
        """Vectorized alarm core vs the per-reading oracle on one synthetic stream: readings/s and ratio."""
        from bench.alarm_core import run_benchmark

        result = run_benchmark(sensors, readings, batch, oracle_readings, seed)
        if as_json:
            keys = ("readings_per_s", "oracle_readings_per_s", "ratio", "readings_per_cpu_s",
                    "oracle_readings_per_cpu_s", "exact_share", "core_bytes_per_sensor", "core_state_bytes_per_sensor")
            figures = {k: round(result[k], 3 if k == "exact_share" else 1) for k in keys}
            typer.echo(json.dumps({**figures, "sensors": result["sensors"], "oracle_agrees": result["oracle_agrees"]}))
            return
        typer.echo(
            f"alarm core: {result['readings_per_s'] / 1e6:.2f} M readings/s "
            f"({result['readings']:,} readings, {result['sensors']:,} sensors, batches of {result['batch']:,}, "
            f"{result['events']:,} events, {result['exact_share']:.1%} of readings through the exact pass)"
        )
        typer.echo(
            f"oracle:     {result['oracle_readings_per_s'] / 1e3:.1f} k readings/s "
            f"(on a subsample, per reading: {result['oracle_sample']}; {result['oracle_events']:,} events)"
        )
        typer.echo(f"ratio:      {result['ratio']:.0f}×")
        typer.echo(f"core:       {result['core_bytes_per_sensor']:,.0f} bytes per sensor with its compiled rules, "
                   f"{result['core_state_bytes_per_sensor']:,.0f} without them (beside the site)")
        typer.echo(
            f"per CPU second of this process (the machine may be shared): core "
            f"{result['readings_per_cpu_s'] / 1e6:.2f} M/s, oracle {result['oracle_readings_per_cpu_s'] / 1e3:.1f} k/s"
        )
        agree = "yes" if result["oracle_agrees"] else "NO"
        typer.echo(f"core events equal the oracle's on the subsample: {agree}")
        if not result["oracle_agrees"]:
            raise typer.Exit(1)


def _table(result: dict) -> str:
    """``key: value`` lines."""
    return "\n".join(f"{k}: {v}" for k, v in result.items())
