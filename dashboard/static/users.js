// 用户管理 — for admins: every user with role, scope and state; add, edit (name, role, scope), disable or enable,
// reset a password, remove. /api/users; each change is audited by the server with what changed.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const el = tw.el;
  const ROLES = ["operator", "safety_manager", "park_regulator", "county_regulator", "tester", "admin"];
  const form = document.getElementById("user-form");
  const error = document.getElementById("user-form-error");
  const table = document.getElementById("users-table");
  let roleScopes = {}; // role → kinds of scope it may hold
  let editing = null; // the login being edited, or null when adding

  function scopeCell(scope) {
    const cell = el("td");
    let label;
    let names;
    if (scope.enterprises) {
      label = t("col.enterprise");
      names = scope.enterprises.map(function (id) {
        const ent = tw.tree && tw.tree.enterprises.find(function (e) { return e.id === id; });
        return ent ? ent.name : id;
      }).join(", ");
    } else if (scope.park) {
      label = t("users.park");
      names = tw.tree && tw.tree.park.id === scope.park ? tw.tree.park.name : scope.park;
    } else {
      label = t("users.county");
      names = scope.county;
    }
    cell.append(el("span", "line2", label + ": "), tw.dataEl("span", null, names));
    return cell;
  }

  // ----- the add / edit form ---------------------------------------------------------------------------------
  function scopeKind() {
    const kinds = roleScopes[form.role.value] || ["enterprises"];
    const current = form.getAttribute("data-kind");
    return kinds.indexOf(current) >= 0 ? current : kinds[0];
  }

  function showScopeFields() {
    const kinds = roleScopes[form.role.value] || ["enterprises"];
    const kind = scopeKind();
    form.setAttribute("data-kind", kind);
    for (const label of form.querySelectorAll("[data-scope]")) {
      label.hidden = label.getAttribute("data-scope") !== kind;
      label.querySelector("select, input").required = !label.hidden;
    }
    scopePicker(kinds, kind); // testers and admins may hold any kind of scope: they pick one
  }

  function scopePicker(kinds, kind) {
    let picker = form.querySelector(".scope-kinds");
    if (kinds.length < 2) {
      if (picker) picker.remove();
      return;
    }
    if (!picker) {
      picker = el("label", "scope-kinds");
      picker.append(el("span", null, t("users.scopeKind")), el("select"));
      picker.lastChild.name = "kind";
      picker.lastChild.addEventListener("change", function () {
        form.setAttribute("data-kind", picker.lastChild.value);
        showScopeFields();
      });
      form.querySelector("[data-scope=enterprises]").before(picker);
    }
    const select = picker.lastChild;
    select.replaceChildren();
    for (const k of kinds) {
      const o = el("option", null, t("users.scope." + k));
      o.value = k;
      select.append(o);
    }
    select.value = kind;
  }

  function fillChoices() {
    form.role.replaceChildren();
    for (const r of ROLES) {
      const o = el("option", null, t("role." + r, r));
      o.value = r;
      form.role.append(o);
    }
    form.enterprises.replaceChildren();
    form.park.replaceChildren();
    if (!tw.tree) return;
    for (const e of tw.tree.enterprises) {
      const o = el("option", null, e.name);
      o.value = e.id;
      form.enterprises.append(o);
    }
    const park = el("option", null, tw.tree.park.name);
    park.value = tw.tree.park.id;
    form.park.append(park);
    form.enterprises.translate = false;
    form.park.translate = false;
    if (tw.tree.park.county) form.county.placeholder = tw.tree.park.county;
  }

  function openForm(user) {
    editing = user ? user.login : null;
    fillChoices();
    form.reset();
    error.hidden = true;
    tw.setText(document.getElementById("user-form-title"), user ? tw.tf("users.editTitle", { login: user.login })
      : t("users.addTitle"));
    form.login.readOnly = Boolean(user);
    form.querySelector("[data-new]").hidden = Boolean(user);
    form.password.required = !user;
    const scope = user ? user.scope : { enterprises: [] };
    form.login.value = user ? user.login : "";
    form.name.value = user ? user.name : "";
    form.role.value = user ? user.role : "operator";
    form.setAttribute("data-kind", scope.enterprises ? "enterprises" : scope.park ? "park" : "county");
    for (const o of form.enterprises.options) o.selected = (scope.enterprises || []).indexOf(o.value) >= 0;
    if (scope.park) form.park.value = scope.park;
    form.county.value = scope.county || (tw.tree && tw.tree.park.county) || "";
    showScopeFields();
    form.hidden = false;
    (user ? form.name : form.login).focus();
  }

  function formScope() {
    const kind = scopeKind();
    if (kind === "enterprises") {
      return { enterprises: Array.from(form.enterprises.selectedOptions).map(function (o) { return o.value; }) };
    }
    return kind === "park" ? { park: form.park.value } : { county: form.county.value.trim() };
  }

  form.role.addEventListener("change", showScopeFields);
  document.getElementById("user-cancel").addEventListener("click", function () { form.hidden = true; });
  document.getElementById("user-add").addEventListener("click", function () { openForm(null); });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    error.hidden = true;
    const scope = formScope();
    if (scope.enterprises && !scope.enterprises.length) {
      error.hidden = false;
      tw.setText(error, t("users.pickEnterprise"));
      return;
    }
    const request = editing
      ? tw.api("PATCH", "/api/users/" + encodeURIComponent(editing),
        { name: form.name.value.trim(), role: form.role.value, scope: scope })
      : tw.api("POST", "/api/users", { login: form.login.value.trim(), name: form.name.value.trim(),
        role: form.role.value, scope: scope, password: form.password.value });
    request.then(function (user) {
      form.hidden = true;
      tw.settingsStatus(tw.tf(editing ? "users.saved" : "users.added", { login: user.login }));
      load(false);
    }, function (err) {
      error.hidden = false;
      tw.setText(error, t("act.failed") + ": " + err.message);
    });
  });

  // ----- row actions -----------------------------------------------------------------------------------------
  function randomPassword() {
    const bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return "abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY3467"[b % 48]; })
      .join("");
  }

  function act(user, action) {
    const path = "/api/users/" + encodeURIComponent(user.login);
    if (action === "edit") {
      openForm(user);
      return;
    }
    if (action === "toggle") {
      tw.api("PATCH", path, { disabled: !user.disabled }).then(function () {
        tw.settingsStatus(tw.tf(user.disabled ? "users.enabled" : "users.disabled", { login: user.login }));
        load(false);
      }, failed);
      return;
    }
    if (action === "password") {
      tw.ask({
        title: t("users.resetTitle"),
        sub: tw.tf("users.resetSub", { login: user.login }),
        fields: [{ name: "password", labelKey: "users.newPassword", value: randomPassword(), required: true }],
        submit: function (values) { return tw.api("POST", path + "/password", { password: values.password }); },
      }).then(function (values) {
        if (values) tw.settingsStatus(tw.tf("users.reset", { login: user.login }));
      });
      return;
    }
    tw.ask({
      title: t("users.removeTitle"),
      sub: tw.tf("users.removeSub", { login: user.login }),
      fields: [],
      submit: function () { return tw.api("DELETE", path); },
    }).then(function (values) {
      if (!values) return;
      tw.settingsStatus(tw.tf("users.removed", { login: user.login }));
      load(false);
    });
  }

  function failed(err) {
    tw.settingsStatus(t("act.failed") + ": " + err.message);
  }

  function draw(users) {
    const me = tw.user ? tw.user.login : null;
    const head = el("tr");
    for (const k of ["users.login", "users.name", "users.role", "users.scope", "users.state", "users.created",
      "col.actions"]) head.append(el("th", null, t(k)));
    const body = el("tbody");
    for (const u of users) {
      const tr = el("tr");
      tr.setAttribute("data-login", u.login);
      if (u.disabled) tr.classList.add("disabled-user");
      const actions = el("td", "actions");
      for (const a of ["edit", "toggle", "password", "remove"]) {
        if (u.login === me && (a === "toggle" || a === "remove")) continue; // nobody locks themselves out
        const b = el("button", "tool", a === "toggle" ? t(u.disabled ? "users.enable" : "users.disable")
          : t("users.act." + a));
        b.type = "button";
        b.setAttribute("data-action", a);
        b.addEventListener("click", function () { act(u, a); });
        actions.append(b);
      }
      tr.append(tw.dataEl("td", "mono", u.login), tw.dataEl("td", null, u.name), el("td", null, t("role." + u.role)),
        scopeCell(u.scope),
        el("td", u.disabled ? "state-off" : "state-on", t(u.disabled ? "users.off" : "users.on")),
        el("td", "mono", tw.formatTime(u.created_ms)), actions);
      body.append(tr);
    }
    const thead = el("thead");
    thead.append(head);
    table.replaceChildren(thead, body);
  }

  function load(clearStatus) {
    if (clearStatus) tw.settingsStatus(t("settings.loading"));
    return tw.api("GET", "/api/users").then(function (data) {
      roleScopes = data.role_scopes;
      draw(data.users);
      if (clearStatus) tw.settingsStatus(tw.tf("users.count", { n: data.users.length }));
    }, failed);
  }

  tw.settingsPanes.users = { roles: ["admin"], show: function () { form.hidden = true; load(true); } };
  tw.on("lang", function () {
    if (!document.getElementById("settings-users").hidden) load(true);
    else table.replaceChildren(); // drawn afresh when shown: nothing in the old language meanwhile
  });
})();
