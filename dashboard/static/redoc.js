// /redoc (with security.api_docs: open): ReDoc from vendor/, on this server's OpenAPI document; no CDN.
"use strict";

window.Redoc.init("openapi.json", { hideDownloadButton: false }, document.getElementById("redoc"));
