// Node-RED settings for tankwatch's side-by-side benchmark: 127.0.0.1 only, no editor, memory context.
// bench/peers/node_red.py passes the port and paths in the environment.
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.TW_NODE_RED_PORT, 10),
    userDir: process.env.TW_NODE_RED_USER_DIR,
    flowFile: process.env.TW_NODE_RED_FLOWS,
    httpAdminRoot: false,       // no editor or admin API: nothing to deploy but our flow
    httpNodeRoot: "/",
    credentialSecret: false,
    contextStorage: { default: { module: "memory" } },
    functionExternalModules: false,
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false },
    logging: { console: { level: "warn", metrics: false, audit: false } },
};
