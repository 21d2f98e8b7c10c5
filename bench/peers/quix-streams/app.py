"""The Quix Streams peer: HH/H/L/LL with a deadband for every sensor over {"points": [[sensor, ts_ms, value], ...]}
records, the same rules as the Node-RED flow's evaluate.js. Run with the Quix Streams venv's Python:

    python app.py BOOTSTRAP TOPIC GROUP STATUS_FILE EXPECTED_POINTS HH H L LL DEADBAND

It writes {"points", "messages", "transitions", "first_s", "last_s"} to STATUS_FILE every half second and when it
has evaluated EXPECTED_POINTS, then stops. Plain per-point rules in a dict: Quix's own state store would be slower.
"""

import json
import os
import sys
import time

from quixstreams import Application

bootstrap, topic_name, group, status_file = sys.argv[1:5]
expected = int(sys.argv[5])
HH, H, L, LL, DB = map(float, sys.argv[6:11])

inside: dict[str, int] = {}  # bits: 1 HH, 2 H, 4 L, 8 LL
counts = {"points": 0, "messages": 0, "transitions": 0, "first_s": 0.0, "last_s": 0.0}
written = [0.0]


def write_status() -> None:
    tmp = status_file + ".tmp"
    with open(tmp, "w") as out:
        json.dump(counts, out)
    os.replace(tmp, status_file)


def evaluate(value: dict) -> None:
    if not counts["first_s"]:
        counts["first_s"] = time.time()
    points = value["points"]
    transitions = 0
    for sensor, _ts, v in points:
        was = inside.get(sensor, 0)
        now = was
        if was & 1:
            if v < HH - DB:
                now &= ~1
        elif v >= HH:
            now |= 1
        if was & 2:
            if v < H - DB:
                now &= ~2
        elif v >= H:
            now |= 2
        if was & 4:
            if v > L + DB:
                now &= ~4
        elif v <= L:
            now |= 4
        if was & 8:
            if v > LL + DB:
                now &= ~8
        elif v <= LL:
            now |= 8
        if now != was:
            inside[sensor] = now
            transitions += bin(now ^ was).count("1")
    counts["points"] += len(points)
    counts["messages"] += 1
    counts["transitions"] += transitions
    counts["last_s"] = time.time()
    if counts["points"] >= expected or counts["last_s"] - written[0] > 0.5:
        written[0] = counts["last_s"]
        write_status()
        if counts["points"] >= expected:
            app.stop()


app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                  use_changelog_topics=False)
sdf = app.dataframe(app.topic(topic_name, value_deserializer="json"))
sdf = sdf.update(evaluate)
app.run()
