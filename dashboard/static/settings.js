// 设置 — the settings view: its sub-tabs (each pane registers itself in tw.settingsPanes with the roles that may
// see it) and 我的账号, where everyone changes their own password (/api/auth/password).
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const panes = {}; // sub-tab name → {roles: [..] or null for everyone, show()}
  tw.settingsPanes = panes;

  function allowed(name) {
    const pane = panes[name];
    return Boolean(pane) && (!pane.roles || tw.hasRole(pane.roles));
  }

  function status(text) {
    tw.setText(document.getElementById("settings-status"), text || "");
  }
  tw.settingsStatus = status;

  // ----- 我的账号: change one's own password ------------------------------------------------------------
  const form = document.getElementById("password-form");
  const error = document.getElementById("password-error");

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    error.hidden = true;
    if (form.password.value !== form.repeat.value) {
      error.hidden = false;
      tw.setText(error, t("account.mismatch"));
      return;
    }
    const body = { current: form.current.value, password: form.password.value };
    tw.renewToken(function () { return tw.api("POST", "/api/auth/password", body); }).then(function () {
      form.reset();
      status(t("account.changed"));
    }, function (err) {
      error.hidden = false;
      tw.setText(error, t("act.failed") + ": " + err.message);
    });
  });

  panes.account = { roles: null, show: function () { status(""); } };

  // ----- the sub-tabs ---------------------------------------------------------------------------------------
  tw.on("tree", function () {
    for (const a of document.querySelectorAll("#settings-tabs a")) a.hidden = !allowed(a.getAttribute("data-sub"));
  });

  tw.views.settings = {
    show: function (parts) {
      const sub = allowed(parts[0]) ? parts[0] : "alarms";
      for (const pane of document.querySelectorAll("#view-settings .settings-pane")) {
        pane.hidden = pane.getAttribute("data-sub") !== sub;
      }
      for (const a of document.querySelectorAll("#settings-tabs a")) {
        a.setAttribute("aria-current", a.getAttribute("data-sub") === sub ? "page" : "false");
      }
      status("");
      panes[sub].show();
    },
  };
})();
