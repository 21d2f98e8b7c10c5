// Fresh counters and limits when the flow starts (the "evaluate" node's On Start code).
flow.set("st", {
    hh: 90, h: 80, l: 20, ll: 10, deadband: 1,
    index: new Map(), inside: [],
    points: 0, messages: 0, transitions: 0, first_ms: 0, last_ms: 0,
});
