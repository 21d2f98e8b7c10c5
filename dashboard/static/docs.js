// /docs (with security.api_docs: open): Swagger UI from vendor/, on this server's OpenAPI document; no CDN.
"use strict";

window.SwaggerUIBundle({ url: "openapi.json", dom_id: "#swagger", deepLinking: true });
