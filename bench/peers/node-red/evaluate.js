// HH/H/L/LL with a deadband for every sensor, over {"points": [[sensor, ts_ms, value], ...]} batches.
// The source of the "evaluate" function node in flows.json (tests check the two are the same text).
// A high limit is entered at value >= limit and left at value < limit - deadband; a low limit is entered at
// value <= limit and left at value > limit + deadband. Each entry and each exit is one limit transition.
const st = flow.get("st");
const points = msg.payload.points;
const HH = st.hh, H = st.h, L = st.l, LL = st.ll, DB = st.deadband;
const index = st.index, inside = st.inside;
let transitions = 0;
for (let i = 0; i < points.length; i++) {
    const p = points[i];
    let k = index.get(p[0]);
    if (k === undefined) {
        k = index.size;
        index.set(p[0], k);
        inside.push(0);
    }
    const v = p[2];
    const was = inside[k];  // bits: 1 HH, 2 H, 4 L, 8 LL
    let now = was;
    if (was & 1) { if (v < HH - DB) now &= ~1; } else if (v >= HH) now |= 1;
    if (was & 2) { if (v < H - DB) now &= ~2; } else if (v >= H) now |= 2;
    if (was & 4) { if (v > L + DB) now &= ~4; } else if (v <= L) now |= 4;
    if (was & 8) { if (v > LL + DB) now &= ~8; } else if (v <= LL) now |= 8;
    if (now !== was) {
        inside[k] = now;
        const flipped = now ^ was;
        transitions += (flipped & 1) + ((flipped >> 1) & 1) + ((flipped >> 2) & 1) + ((flipped >> 3) & 1);
    }
}
st.points += points.length;
st.messages += 1;
st.transitions += transitions;
st.last_ms = Date.now();
return null;
