// 消息 — the notification centre: what the escalation chain sent to the person logged in (steps, reminders, alarms
// cleared, escalations closed), newest first, in the page's language, marked read one by one or all at once.
// From GET /api/inbox and POST /api/inbox/{id}/read.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const setText = tw.setText;

  const REFRESH_MS = 15000;
  const button = document.getElementById("inbox-button");
  const panel = document.getElementById("inbox-panel");
  const list = document.getElementById("inbox-list");
  const unreadOnly = document.getElementById("inbox-unread-only");
  let messages = [];
  let timer = null;

  function subject(m) {
    return tw.lang === "en" ? m.subject_en : m.subject_zh;
  }

  function body(m) {
    return tw.lang === "en" ? m.body_en : m.body_zh;
  }

  function render() {
    const unread = messages.filter(function (m) { return !m.read; }).length;
    const count = document.getElementById("inbox-unread");
    count.hidden = unread === 0;
    setText(count, String(unread));
    if (panel.hidden) return;
    const shown = unreadOnly.checked ? messages.filter(function (m) { return !m.read; }) : messages;
    list.replaceChildren();
    if (!shown.length) {
      list.append(el("li", "inbox-empty", t("inbox.empty")));
      return;
    }
    for (const m of shown) {
      const item = el("li", "inbox-item");
      item.setAttribute("data-id", String(m.id));
      item.setAttribute("data-kind", m.kind);
      item.setAttribute("data-read", m.read ? "1" : "0");
      const head = el("div", "inbox-item-head");
      head.append(el("span", "inbox-kind", t("inbox.kind." + m.kind, m.kind)),
        el("time", "mono", tw.formatTime(m.ts_ms)));
      // the messages are rendered server-side in both languages; their names and values are data
      item.append(head, tw.dataEl("div", "inbox-subject", subject(m)), tw.dataEl("div", "inbox-body", body(m)));
      item.addEventListener("click", function () {
        item.classList.toggle("open");
        if (!m.read) markRead(m);
      });
      list.append(item);
    }
  }

  function load() {
    if (!tw.has("/api/inbox", "get")) return Promise.resolve();
    return tw.api("GET", "/api/inbox?limit=200").then(function (data) {
      messages = data.messages || [];
      render();
    }).catch(function () {});
  }

  function markRead(m) {
    m.read = true;
    render();
    return tw.api("POST", "/api/inbox/" + encodeURIComponent(m.id) + "/read").catch(function () {
      m.read = false;
      render();
    });
  }

  function toggle(open) {
    panel.hidden = !open;
    button.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) load().then(render);
  }

  button.addEventListener("click", function () { toggle(panel.hidden); });
  document.getElementById("inbox-close").addEventListener("click", function () { toggle(false); });
  unreadOnly.addEventListener("change", render);
  document.getElementById("inbox-read-all").addEventListener("click", function () {
    Promise.all(messages.filter(function (m) { return !m.read; }).map(markRead)).then(load);
  });
  tw.on("lang", render);
  tw.on("tree", function () {
    button.hidden = !tw.has("/api/inbox", "get");
    load();
    if (!timer) timer = window.setInterval(load, REFRESH_MS);
  });
})();
