// GET /counts: what the "evaluate" node has seen so far.
const st = flow.get("st");
msg.payload = {
    points: st.points, messages: st.messages, transitions: st.transitions, sensors: st.index.size,
    last_ms: st.last_ms,
};
return msg;
