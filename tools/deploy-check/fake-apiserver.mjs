#!/usr/bin/env node
// A fake Kubernetes API server, just enough for `helm install
// --dry-run=server` (or `helm template --dry-run=server`): discovery of the
// kinds the chart renders, GET and list of the Secrets given on the command
// line, 404 for everything else. It lets the chart's `lookup` calls and
// NOTES.txt be exercised without a cluster. Everything it is asked
// is logged to stderr. Used by scripts/check-deploy to prove that the
// chart's generated secrets are read back, not regenerated, on an upgrade.
//
//   node fake-apiserver.mjs PORTFILE NAMESPACE SECRET.json...
// Listens on 127.0.0.1 (an ephemeral port, written to PORTFILE) until killed.
import fs from "node:fs";
import http from "node:http";

const [portFile, namespace, ...secretFiles] = process.argv.slice(2);
if (!portFile || !namespace) {
    console.error("usage: fake-apiserver.mjs PORTFILE NAMESPACE SECRET.json...");
    process.exit(2);
}
const secrets = new Map();
for (const f of secretFiles) {
    const s = JSON.parse(fs.readFileSync(f, "utf8"));
    secrets.set(s.metadata.name, { apiVersion: "v1", kind: "Secret", ...s, metadata: { namespace, ...s.metadata } });
}

// Discovery: the kinds the chart renders, so helm can map each manifest to
// its resource. Reads of anything but the given Secrets answer 404.
const KINDS = {
    v1: [["secrets", "Secret"], ["services", "Service"], ["serviceaccounts", "ServiceAccount"], ["pods", "Pod"], ["configmaps", "ConfigMap"],
        ["persistentvolumeclaims", "PersistentVolumeClaim"]],
    "apps/v1": [["deployments", "Deployment"], ["statefulsets", "StatefulSet"]],
    "policy/v1": [["poddisruptionbudgets", "PodDisruptionBudget"]],
    "autoscaling/v2": [["horizontalpodautoscalers", "HorizontalPodAutoscaler"]],
    "networking.k8s.io/v1": [["ingresses", "Ingress"]],
    "monitoring.coreos.com/v1": [["servicemonitors", "ServiceMonitor"]],
};
const resourceList = (gv) => ({
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: gv,
    resources: KINDS[gv].map(([name, kind]) => ({
        name, singularName: kind.toLowerCase(), namespaced: true, kind, verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
    })),
});
const groups = Object.keys(KINDS).filter((gv) => gv.includes("/")).map((gv) => {
    const [group, version] = gv.split("/");
    return { name: group, versions: [{ groupVersion: gv, version }], preferredVersion: { groupVersion: gv, version } };
});

function send(res, code, body) {
    res.writeHead(code, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body));
}
const notFound = (res, what) =>
    send(res, 404, { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404, message: `${what} not found` });

function selected(obj, selector) {
    if (!selector) return true;
    const labels = (obj.metadata && obj.metadata.labels) || {};
    return selector.split(",").every((term) => {
        const [k, v] = term.split("=");
        return v === undefined ? k in labels : labels[k] === v;
    });
}

const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const p = url.pathname;
    console.error(`fake-apiserver: ${req.method} ${req.url}`);
    if (req.method !== "GET") return send(res, 405, { kind: "Status", apiVersion: "v1", status: "Failure", code: 405, message: "read only" });
    if (p === "/version") return send(res, 200, { major: "1", minor: "30", gitVersion: "v1.30.0", platform: "linux/amd64" });
    if (p === "/api") return send(res, 200, { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] });
    if (p === "/apis") return send(res, 200, { kind: "APIGroupList", apiVersion: "v1", groups });
    if (p === "/api/v1") return send(res, 200, resourceList("v1"));
    let m;
    if ((m = /^\/apis\/([^/]+\/[^/]+)$/.exec(p)) && KINDS[m[1]]) return send(res, 200, resourceList(m[1]));
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/secrets\/([^/]+)$/.exec(p))) {
        const s = m[1] === namespace && secrets.get(m[2]);
        return s ? send(res, 200, s) : notFound(res, `secrets "${m[2]}"`);
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/secrets$/.exec(p))) {
        const sel = url.searchParams.get("labelSelector");
        const items = m[1] === namespace ? [...secrets.values()].filter((s) => selected(s, sel)) : [];
        return send(res, 200, { kind: "SecretList", apiVersion: "v1", metadata: { resourceVersion: "1" }, items });
    }
    return notFound(res, p);
});
server.listen(0, "127.0.0.1", () => fs.writeFileSync(portFile, String(server.address().port)));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => server.close(() => process.exit(0)));
