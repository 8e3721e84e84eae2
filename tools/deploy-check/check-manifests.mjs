#!/usr/bin/env node
// Offline check of rendered Kubernetes manifests (the output of `helm template`).
//
//   node check-manifests.mjs FILE...            exit 0 when every document passes
//   node check-manifests.mjs --self-test FILE   break FILE's documents on purpose
//                                                and demand that each break is caught
//
// Every document is checked three ways; any finding fails the run:
//  1. kubernetes-models: the Kubernetes OpenAPI schema of its apiVersion/kind
//     (types, required fields, enums, formats). An apiVersion/kind that has no
//     model is itself an error, so a typo in either is caught.
//  2. Unknown fields. The schema above does not reject unknown fields, so two
//     field checks do: (a) a walk over the model metadata of
//     @kubernetes/client-node (each class's attributeTypeMap: field names and
//     types) for built-in kinds, which also checks the JSON type of every
//     value; (b) for every kind, CRDs such as ServiceMonitor included, a trace
//     of which fields the compiled schema validator of (1) reads: a field it
//     never reads is not in the schema.
//  3. Cross-object sense: selectors that select the pod template they belong
//     to, Services / PDBs / HPAs / ServiceMonitors / Ingresses that point at
//     rendered objects and named ports that exist, volume mounts that have a
//     volume, no duplicate objects or env names, DNS-valid names and labels.
//
// YAML is read as Kubernetes reads it (YAML 1.1: an unquoted `on` or `yes`
// is a boolean) and duplicate keys are errors.
import fs from "node:fs";
import { parseAllDocuments } from "yaml";
import * as cn from "@kubernetes/client-node/dist/gen/models/all.js";

// The Kubernetes API release that @kubernetes/client-node's models describe.
const CN_API = (() => {
    try {
        const src = fs.readFileSync(new URL("./node_modules/@kubernetes/client-node/dist/gen/models/V1Pod.js", import.meta.url), "utf8");
        return (/OpenAPI spec version: (\S+)/.exec(src) || [])[1] || "?";
    } catch {
        return "?";
    }
})();
const CRD_PACKAGES = { "monitoring.coreos.com": "@kubernetes-models/prometheus-operator" };

// ---------------------------------------------------------------- loading

function loadDocs(file, text) {
    const out = [];
    const docs = parseAllDocuments(text, { version: "1.1", uniqueKeys: true, prettyErrors: true });
    const list = Array.isArray(docs) ? docs : [docs];
    list.forEach((d, i) => {
        if (d.errors.length) {
            out.push({ file, index: i, parseError: d.errors.map((e) => e.message).join("; ") });
            return;
        }
        const obj = d.toJS({ maxAliasCount: 100 });
        if (obj === null || obj === undefined) return; // an empty document (a disabled template)
        out.push({ file, index: i, obj });
    });
    return out;
}

const modelCache = new Map();
async function kmModel(apiVersion, kind) {
    const key = `${apiVersion} ${kind}`;
    if (modelCache.has(key)) return modelCache.get(key);
    let model = null;
    const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
    if (/^[a-z0-9.-]*$/.test(group) && /^v\d+((alpha|beta)\d+)?$/.test(version) && /^[A-Z][A-Za-z0-9]*$/.test(kind)) {
        const pkg = CRD_PACKAGES[group] ?? "kubernetes-models";
        const spec = group ? `${pkg}/${group}/${version}/${kind}` : `${pkg}/${version}/${kind}`;
        try {
            const mod = await import(spec);
            const m = mod[kind];
            if (typeof m === "function" && m.apiVersion === apiVersion && m.kind === kind) model = m;
        } catch {
            model = null;
        }
    }
    modelCache.set(key, model);
    return model;
}

function cnClass(apiVersion, kind) {
    const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
    if (CRD_PACKAGES[group]) return null;
    const v = version.charAt(0).toUpperCase() + version.slice(1);
    const g = group === "" ? "Core" : group.split(".")[0].replace(/^./, (c) => c.toUpperCase());
    for (const name of [`${g}${v}${kind}`, `${v}${kind}`]) {
        const c = cn[name];
        if (c && Array.isArray(c.attributeTypeMap) && c.attributeTypeMap.some((a) => a.baseName === "kind")) return { name, c };
    }
    return null;
}

// ---------------------------------------------------------------- check 1 + 2b

// Wraps obj so that every property the validator reads is recorded; returns
// the wrapped value. Objects whose keys were never read hold unknown fields.
function traced(obj, path, records) {
    if (obj === null || typeof obj !== "object") return obj;
    if (Array.isArray(obj)) return obj.map((v, i) => traced(v, `${path}[${i}]`, records));
    const read = new Set();
    const copy = {};
    for (const [k, v] of Object.entries(obj)) copy[k] = traced(v, `${path}.${k}`, records);
    records.push({ path, keys: Object.keys(obj), read });
    return new Proxy(copy, {
        get(t, p, r) {
            if (typeof p === "string") read.add(p);
            return Reflect.get(t, p, r);
        },
    });
}

function schemaCheck(Model, obj, report) {
    const records = [];
    const wrapped = traced(obj, "", records);
    try {
        // The model's validate() runs the compiled JSON schema on `this`.
        Model.prototype.validate.call(wrapped);
    } catch (e) {
        const errs = Array.isArray(e.errors) ? e.errors : null;
        if (errs) for (const x of errs) report(x.instancePath.replace(/\/(\d+)(?=\/|$)/g, "[$1]").replace(/\//g, ".") || ".", `schema: ${x.message}${x.params && x.params.allowedValues ? ` (${x.params.allowedValues.join(", ")})` : ""}`);
        else report(".", `schema: ${e.message}`);
        return false;
    }
    // Report an unknown field once, not again for everything below it.
    const unknown = [];
    for (const r of records) for (const k of r.keys) if (!r.read.has(k)) unknown.push(`${r.path}.${k}`);
    for (const u of unknown) {
        if (!unknown.some((v) => v !== u && (u.startsWith(v + ".") || u.startsWith(v + "[")))) report(u, "unknown field (not in the schema)");
    }
    return true;
}

// ---------------------------------------------------------------- check 2a

const QUANTITY_MAPS = new Set(["limits", "requests", "hard", "capacity", "allocatable", "overhead"]);
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function walkClientNode(value, type, format, path, report) {
    if (value === null || value === undefined) return;
    let m;
    if ((m = /^Array<(.+)>$/.exec(type))) {
        if (!Array.isArray(value)) return report(path, `expected an array (${type}), got ${typeof value}`);
        value.forEach((v, i) => walkClientNode(v, m[1], "", `${path}[${i}]`, report));
        return;
    }
    if ((m = /^\{ \[key: string\]: (.+); \}$/.exec(type))) {
        if (!isObj(value)) return report(path, `expected a map (${type})`);
        const field = path.split(".").pop();
        const inner = m[1] === "string" && QUANTITY_MAPS.has(field) ? "Quantity" : m[1];
        for (const [k, v] of Object.entries(value)) walkClientNode(v, inner, "", `${path}.${k}`, report);
        return;
    }
    switch (type) {
        case "any":
            return;
        case "string":
        case "Date":
        case "V1MicroTime":
            if (typeof value !== "string") report(path, `expected a string, got ${typeof value} ${JSON.stringify(value)}`);
            return;
        case "Quantity":
            if (typeof value !== "string" && typeof value !== "number") report(path, `expected a quantity, got ${typeof value}`);
            return;
        case "number":
            if (typeof value !== "number") report(path, `expected a number, got ${typeof value} ${JSON.stringify(value)}`);
            else if (/^int(32|64)$/.test(format) && !Number.isInteger(value)) report(path, `expected an integer, got ${value}`);
            return;
        case "boolean":
            if (typeof value !== "boolean") report(path, `expected a boolean, got ${typeof value} ${JSON.stringify(value)}`);
            return;
        case "IntOrString":
            if (typeof value !== "string" && !Number.isInteger(value)) report(path, `expected an integer or a string, got ${JSON.stringify(value)}`);
            return;
        default: {
            const c = cn[type];
            if (!c || !Array.isArray(c.attributeTypeMap)) return report(path, `checker: no model for type ${type}`);
            if (!isObj(value)) return report(path, `expected an object (${type}), got ${Array.isArray(value) ? "array" : typeof value}`);
            for (const [k, v] of Object.entries(value)) {
                const a = c.attributeTypeMap.find((x) => x.baseName === k);
                if (!a) report(`${path}.${k}`, `unknown field (${type} has no field "${k}")`);
                else walkClientNode(v, a.type, a.format, `${path}.${k}`, report);
            }
        }
    }
}

// ---------------------------------------------------------------- check 3

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function podTemplate(o) {
    const s = o.obj.spec || {};
    if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"].includes(o.obj.kind)) return s.template;
    if (o.obj.kind === "Pod") return { metadata: o.obj.metadata, spec: s };
    return null;
}
const matches = (selector, labels) => isObj(selector) && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels && labels[k] === v);
function selects(sel, labels) {
    if (!isObj(sel)) return false;
    const ml = sel.matchLabels || {};
    const me = sel.matchExpressions || [];
    if (!Object.keys(ml).length && !me.length) return false;
    return Object.entries(ml).every(([k, v]) => labels && labels[k] === v) &&
        me.every((e) => {
            const has = labels && Object.prototype.hasOwnProperty.call(labels, e.key);
            if (e.operator === "In") return has && e.values.includes(labels[e.key]);
            if (e.operator === "NotIn") return !has || !e.values.includes(labels[e.key]);
            if (e.operator === "Exists") return has;
            if (e.operator === "DoesNotExist") return !has;
            return false;
        });
}
const containerPorts = (spec) => [...(spec.containers || []), ...(spec.initContainers || [])].flatMap((c) => c.ports || []);

function crossCheck(items, report) {
    const objs = items.filter((i) => i.obj);
    const seen = new Map();
    const workloads = objs.filter((o) => podTemplate(o));
    const services = objs.filter((o) => o.obj.kind === "Service");
    for (const o of objs) {
        try {
            crossCheckOne(o, objs, seen, workloads, services, report);
        } catch (e) {
            report(o, ".", `malformed, cross-object checks stopped: ${e.message}`);
        }
    }
}

function crossCheckOne(o, objs, seen, workloads, services, report) {
    {
        const r = (p, m) => report(o, p, m);
        const md = o.obj.metadata || {};
        const key = `${o.obj.apiVersion} ${o.obj.kind} ${md.namespace || ""} ${md.name}`;
        if (seen.has(key)) r(".metadata.name", `duplicate object ${o.obj.kind}/${md.name}`);
        seen.set(key, o);
        if (typeof md.name !== "string" || !md.name) return r(".metadata.name", "missing");
        if (!DNS1123_SUBDOMAIN.test(md.name) || md.name.length > 253) r(".metadata.name", `not a DNS-1123 subdomain: ${md.name}`);
        if (o.obj.kind === "Service" && (!DNS1035_LABEL.test(md.name) || md.name.length > 63)) r(".metadata.name", `a Service name must be a DNS-1035 label of at most 63 characters: ${md.name}`);
        if (o.obj.kind === "StatefulSet" && md.name.length > 52) r(".metadata.name", "a StatefulSet name longer than 52 characters breaks its controller-revision-hash label");
        const labelSets = [["metadata.labels", md.labels]];
        const t = podTemplate(o);
        if (t) labelSets.push(["spec.template.metadata.labels", t.metadata && t.metadata.labels]);
        for (const [where, labels] of labelSets) for (const [k, v] of Object.entries(labels || {})) {
            if (typeof v === "string" && (v.length > 63 || !LABEL_VALUE.test(v))) r(`.${where}.${k}`, `invalid label value ${JSON.stringify(v)}`);
        }

        if (t) {
            const tl = (t.metadata && t.metadata.labels) || {};
            if (o.obj.kind !== "Pod" && o.obj.kind !== "Job" && !selects(o.obj.spec.selector, tl)) r(".spec.selector", "does not select the pod template's labels");
            const spec = t.spec || {};
            const volumes = new Set([...(spec.volumes || []).map((v) => v.name), ...((o.obj.spec.volumeClaimTemplates || []).map((v) => v.metadata && v.metadata.name))]);
            const all = [...(spec.containers || []), ...(spec.initContainers || [])];
            const cnames = new Set();
            all.forEach((c, ci) => {
                const cp = `.spec.template.spec.containers[${ci}]`;
                if (cnames.has(c.name)) r(`${cp}.name`, `duplicate container name ${c.name}`);
                cnames.add(c.name);
                const ports = new Set((c.ports || []).map((p) => p.name).filter(Boolean));
                for (const p of c.ports || []) if (p.name && (p.name.length > 15 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(p.name))) r(`${cp}.ports`, `port name ${p.name} must be an IANA service name (at most 15 characters)`);
                const envNames = new Set();
                for (const e of c.env || []) {
                    if (envNames.has(e.name)) r(`${cp}.env`, `duplicate env ${e.name}`);
                    envNames.add(e.name);
                }
                for (const m of c.volumeMounts || []) if (!volumes.has(m.name)) r(`${cp}.volumeMounts`, `no volume named ${m.name}`);
                const handlers = [["livenessProbe", c.livenessProbe], ["readinessProbe", c.readinessProbe], ["startupProbe", c.startupProbe],
                    ["lifecycle.preStop", c.lifecycle && c.lifecycle.preStop], ["lifecycle.postStart", c.lifecycle && c.lifecycle.postStart]];
                for (const [hn, h] of handlers) {
                    if (!h) continue;
                    const port = (h.httpGet && h.httpGet.port) ?? (h.tcpSocket && h.tcpSocket.port);
                    if (typeof port === "string" && !ports.has(port)) r(`${cp}.${hn}`, `named port ${port} is not a port of this container`);
                }
            });
        }

        if (o.obj.kind === "Service") {
            const sel = o.obj.spec && o.obj.spec.selector;
            if (sel && Object.keys(sel).length) {
                const targets = workloads.filter((w) => matches(sel, (podTemplate(w).metadata || {}).labels));
                if (!targets.length) r(".spec.selector", "selects no rendered pod template");
                for (const p of o.obj.spec.ports || []) {
                    if (typeof p.targetPort === "string" && !targets.every((w) => containerPorts(podTemplate(w).spec || {}).some((cp) => cp.name === p.targetPort)))
                        r(".spec.ports", `targetPort ${p.targetPort} is not a named port of the selected pods`);
                }
            }
        }
        if (o.obj.kind === "StatefulSet") {
            const sn = o.obj.spec.serviceName;
            const svc = services.find((s) => s.obj.metadata.name === sn);
            if (sn && !svc) r(".spec.serviceName", `no rendered Service ${sn}`);
            else if (svc && svc.obj.spec.clusterIP !== "None") r(".spec.serviceName", `Service ${sn} is not headless`);
        }
        if (o.obj.kind === "PodDisruptionBudget" && !workloads.some((w) => selects(o.obj.spec.selector, (podTemplate(w).metadata || {}).labels)))
            r(".spec.selector", "selects no rendered pod template");
        if (o.obj.kind === "HorizontalPodAutoscaler") {
            const ref = o.obj.spec.scaleTargetRef || {};
            const w = workloads.find((x) => x.obj.kind === ref.kind && x.obj.metadata.name === ref.name && x.obj.apiVersion === ref.apiVersion);
            if (!w) r(".spec.scaleTargetRef", `no rendered ${ref.apiVersion} ${ref.kind}/${ref.name}`);
            else if (w.obj.spec.replicas !== undefined) r(".spec.scaleTargetRef", `${ref.kind}/${ref.name} sets spec.replicas, which fights the autoscaler on every upgrade`);
        }
        if (o.obj.kind === "ServiceMonitor") {
            const svcs = services.filter((s) => selects(o.obj.spec.selector, s.obj.metadata.labels));
            if (!svcs.length) r(".spec.selector", "selects no rendered Service");
            for (const e of o.obj.spec.endpoints || []) if (e.port && !svcs.every((s) => (s.obj.spec.ports || []).some((p) => p.name === e.port)))
                r(".spec.endpoints", `port ${e.port} is not a named port of the selected Services`);
        }
        if (o.obj.kind === "Ingress") {
            const backends = [];
            if (o.obj.spec.defaultBackend) backends.push(o.obj.spec.defaultBackend);
            for (const rule of o.obj.spec.rules || []) for (const p of (rule.http && rule.http.paths) || []) backends.push(p.backend);
            for (const b of backends) {
                if (!b.service) continue;
                const s = services.find((x) => x.obj.metadata.name === b.service.name);
                if (!s) r(".spec.rules", `backend Service ${b.service.name} is not rendered`);
                else if (!(s.obj.spec.ports || []).some((p) => (b.service.port.name ? p.name === b.service.port.name : p.port === b.service.port.number)))
                    r(".spec.rules", `backend port ${JSON.stringify(b.service.port)} is not a port of Service ${b.service.name}`);
            }
        }
    }
}

// ---------------------------------------------------------------- driver

async function check(items) {
    const findings = [];
    const at = (o) => `${o.file}#${o.index} ${o.obj && o.obj.kind}/${o.obj && o.obj.metadata && o.obj.metadata.name}`;
    const report = (o, path, msg) => findings.push(`${at(o)}: ${path}: ${msg}`);
    for (const o of items) {
        if (o.parseError) { findings.push(`${o.file}#${o.index}: YAML: ${o.parseError}`); continue; }
        const { apiVersion, kind } = o.obj;
        if (typeof apiVersion !== "string" || typeof kind !== "string") { report(o, ".", "apiVersion and kind must be strings"); continue; }
        const Model = await kmModel(apiVersion, kind);
        if (!Model) { report(o, ".", `unknown apiVersion/kind ${apiVersion} ${kind}`); continue; }
        schemaCheck(Model, o.obj, (p, m) => report(o, p, m));
        const c = cnClass(apiVersion, kind);
        const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
        if (!c && !CRD_PACKAGES[group]) { report(o, ".", `unknown apiVersion/kind ${apiVersion} ${kind}: not served by Kubernetes ${CN_API} (removed or never GA)`); continue; }
        if (c) walkClientNode(o.obj, c.name, "", "", (p, m) => report(o, p || ".", `model: ${m}`));
    }
    crossCheck(items, report);
    return [...new Set(findings)];
}

// The self-test: each case breaks a copy of the documents in one way, and
// the check must report it (a finding whose text contains `expect`).
const clone = (x) => JSON.parse(JSON.stringify(x));
const find = (items, kind, pred = () => true) => items.find((o) => o.obj && o.obj.kind === kind && pred(o.obj));
const hubDeployment = (items) => find(items, "Deployment");
const CASES = [
    ["misspelled field in a probe (httpGet -> httpGett)", "livenessProbe.httpGett: ", (items) => {
        const c = hubDeployment(items).obj.spec.template.spec.containers[0];
        c.livenessProbe.httpGett = c.livenessProbe.httpGet; delete c.livenessProbe.httpGet;
    }],
    ["misspelled field in a spec (replicas -> replica)", ".spec.replica: ", (items) => {
        const s = hubDeployment(items).obj.spec; s.replica = 3; delete s.replicas;
    }],
    ["misspelled field in the pod securityContext (runAsNonRoot -> runAsNonroot)", "securityContext.runAsNonroot: ", (items) => {
        const s = hubDeployment(items).obj.spec.template.spec; s.securityContext.runAsNonroot = true; delete s.securityContext.runAsNonRoot;
    }],
    ["wrong type: replicas as a string", ".spec.replicas: ", (items) => { hubDeployment(items).obj.spec.replicas = "3"; }],
    ["wrong type: containerPort as a string", "ports[0].containerPort: ", (items) => {
        hubDeployment(items).obj.spec.template.spec.containers[0].ports[0].containerPort = "8080";
    }],
    ["wrong type: env value as a YAML 1.1 boolean (unquoted on)", ".value: ", (items) => {
        hubDeployment(items).obj.spec.template.spec.containers[0].env.push({ name: "MSGHUB_REQUIRE_TOKEN", value: true });
    }],
    ["wrong type: a list where an object belongs (resources)", ".resources: ", (items) => {
        hubDeployment(items).obj.spec.template.spec.containers[0].resources = [{ cpu: "1" }];
    }],
    ["missing required field: container image name", "containers[0]", (items) => {
        delete hubDeployment(items).obj.spec.template.spec.containers[0].name;
    }],
    ["wrong enum value: Service type", ".spec.type: ", (items) => {
        find(items, "Service", (o) => o.metadata.name === hubDeployment(items).obj.metadata.name).obj.spec.type = "NodePorts";
    }],
    ["unknown kind (Deployment -> Deploymnet)", "unknown apiVersion/kind", (items) => { hubDeployment(items).obj.kind = "Deploymnet"; }],
    ["old apiVersion (policy/v1beta1 PodDisruptionBudget)", "unknown apiVersion/kind", (items) => { find(items, "PodDisruptionBudget").obj.apiVersion = "policy/v1beta1"; }],
    ["misspelled field in a CRD (ServiceMonitor endpoints[0].path -> pathh)", "endpoints[0].pathh: ", (items) => {
        const e = find(items, "ServiceMonitor").obj.spec.endpoints[0]; e.pathh = e.path; delete e.path;
    }, (items) => find(items, "ServiceMonitor")],
    ["wrong type in a CRD (ServiceMonitor endpoints as an object)", ".spec.endpoints: ", (items) => {
        const s = find(items, "ServiceMonitor").obj.spec; s.endpoints = s.endpoints[0];
    }, (items) => find(items, "ServiceMonitor")],
    ["misspelled field in an HPA (metrics -> metric)", ".spec.metric: ", (items) => {
        const s = find(items, "HorizontalPodAutoscaler").obj.spec; s.metric = s.metrics; delete s.metrics;
    }, (items) => find(items, "HorizontalPodAutoscaler")],
    ["Service selecting no pod", "selects no rendered pod template", (items) => {
        find(items, "Service", (o) => o.metadata.name === hubDeployment(items).obj.metadata.name).obj.spec.selector = { "app.kubernetes.io/name": "nobody" };
    }],
    ["probe on a port the container does not have", "named port", (items) => {
        hubDeployment(items).obj.spec.template.spec.containers[0].readinessProbe.httpGet.port = "htp";
    }],
];

async function selfTest(items) {
    const base = await check(items);
    if (base.length) {
        console.error("self-test: the unbroken documents must pass first:\n  " + base.join("\n  "));
        return false;
    }
    let ok = true, ran = 0;
    for (const [name, expect, breakIt, applies] of CASES) {
        const copy = items.map((o) => ({ ...o, obj: clone(o.obj) }));
        if (applies && !applies(copy)) continue;
        breakIt(copy);
        ran++;
        const f = await check(copy);
        const hit = f.find((x) => x.includes(expect));
        if (hit) console.log(`self-test: caught   ${name}\n          -> ${hit}`);
        else {
            ok = false;
            console.error(`self-test: MISSED   ${name} (expected a finding containing "${expect}")${f.length ? "\n          got: " + f.join("\n               ") : ""}`);
        }
    }
    console.log(`self-test: ${ran} broken variants, ${ok ? "all caught" : "some missed"}`);
    return ok;
}

async function main() {
    const args = process.argv.slice(2);
    const self = args[0] === "--self-test";
    const files = self ? args.slice(1) : args;
    if (!files.length) {
        console.error("usage: check-manifests.mjs [--self-test] FILE...   (FILE - reads stdin)");
        process.exit(2);
    }
    // Each file is one release (one `helm template` output): checked on its own.
    const sets = files.map((f) => ({ file: f, items: loadDocs(f, fs.readFileSync(f === "-" ? 0 : f, "utf8")) }));
    let failed = 0;
    for (const { file, items } of sets) {
        if (self) {
            if (!(await selfTest(items))) failed++;
            continue;
        }
        const findings = await check(items);
        if (findings.length) {
            failed++;
            console.error(findings.join("\n"));
            console.error(`check-manifests: ${file}: ${findings.length} problem(s)`);
            continue;
        }
        const kinds = items.filter((o) => o.obj).map((o) => o.obj.kind);
        const counts = Object.entries(kinds.reduce((a, k) => ((a[k] = (a[k] || 0) + 1), a), {})).map(([k, n]) => `${n} ${k}`).join(", ");
        console.log(`check-manifests: ${file}: ${kinds.length} objects valid (${counts})`);
    }
    process.exit(failed ? 1 : 0);
}

main().catch((e) => {
    console.error(e);
    process.exit(2);
});
