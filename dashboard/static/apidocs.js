// 接口 — the API documentation in the settings view, for admins and testers: Swagger UI (vendor/, loaded when the view
// first opens) on this server's OpenAPI document, every request it sends carrying the login token.
"use strict";

(function () {
  const tw = window.tankwatch;
  const t = tw.t;
  const ROLES = ["admin", "tester"];
  let loaded = null;

  function addAsset(tag, attrs) {
    return new Promise(function (resolve, reject) {
      const node = document.createElement(tag);
      for (const k in attrs) node.setAttribute(k, attrs[k]);
      node.onload = resolve;
      node.onerror = function () { reject(new Error(attrs.src || attrs.href)); };
      document.head.append(node);
    });
  }

  function load() {
    if (!loaded) {
      loaded = Promise.all([
        addAsset("link", { rel: "stylesheet", href: "vendor/swagger-ui/swagger-ui.css" }),
        addAsset("script", { src: "vendor/swagger-ui/swagger-ui-bundle.js" }),
      ]).then(function () {
        window.SwaggerUIBundle({
          url: "openapi.json",
          dom_id: "#api-docs",
          deepLinking: false,
          requestInterceptor: function (request) {
            Object.assign(request.headers, tw.authHeader());
            return request;
          },
        });
        const status = document.getElementById("api-status");
        status.setAttribute("data-i18n", "api.note");
        status.textContent = t("api.note");
      });
    }
    return loaded.catch(function (err) { tw.note(document.getElementById("api-status"), "apiError", err.message); });
  }

  tw.settingsPanes.api = { roles: ROLES, show: load };
})();
