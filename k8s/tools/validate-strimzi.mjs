// Validates Strimzi custom resources offline against the CRD schemas compiled into
// @kubernetes-models/strimzi-kafka-operator (Strimzi 0.49 and 1.0 CRDs).
//
// stdin: a JSON array of documents. stdout: a JSON array with one entry per document,
// {"kind", "name", "errors": [...]}; the exit status is 1 when any document has an error.
//
// Besides the schema (types, enums, required fields), every field must be one the schema declares:
// `kubectl apply` validates strictly and the API server refuses unknown fields of a structural CRD,
// while the compiled validators ignore them. The compiled code reads each declared property of an
// object it checks, so the documents are wrapped in proxies that record those reads; an own key that
// was never read is unknown. Objects whose keys the validator enumerates (maps) or never looks into
// (x-kubernetes-preserve-unknown-fields, e.g. `spec.kafka.config`) are free-form and not checked.

import { readFileSync } from "node:fs";

const GROUP_PREFIX = {
  "kafka.strimzi.io": "KafkaStrimziIo",
  "core.strimzi.io": "CoreStrimziIo",
};

const PACKAGE_DIR = new URL(
  "./node_modules/@kubernetes-models/strimzi-kafka-operator/_schemas/",
  import.meta.url,
);

async function schemaValidator(apiVersion, kind) {
  const [group, version] = String(apiVersion ?? "").split("/");
  const prefix = GROUP_PREFIX[group];
  if (!prefix || !version || !/^[A-Za-z0-9]+$/.test(kind ?? "")) return null;
  const file = new URL(`${prefix}${version[0].toUpperCase()}${version.slice(1)}${kind}.js`, PACKAGE_DIR);
  try {
    return (await import(file.href)).validate;
  } catch (error) {
    if (error.code === "ERR_MODULE_NOT_FOUND") return null;
    throw error;
  }
}

function track(value, path, records) {
  if (Array.isArray(value)) return value.map((item, i) => track(item, `${path}[${i}]`, records));
  if (value === null || typeof value !== "object") return value;
  const record = { path, keys: Object.keys(value), read: new Set(), enumerated: false };
  records.push(record);
  const target = {};
  for (const key of record.keys) target[key] = track(value[key], `${path}.${key}`, records);
  return new Proxy(target, {
    get(t, key, receiver) {
      if (typeof key === "string") record.read.add(key);
      return Reflect.get(t, key, receiver);
    },
    has(t, key) {
      if (typeof key === "string") record.read.add(key);
      return Reflect.has(t, key);
    },
    ownKeys(t) {
      record.enumerated = true;
      return Reflect.ownKeys(t);
    },
  });
}

function unknownFields(records) {
  const errors = [];
  for (const record of records) {
    if (record.enumerated || record.read.size === 0) continue;
    for (const key of record.keys) {
      if (!record.read.has(key)) errors.push(`${record.path}.${key}: unknown field`);
    }
  }
  return errors;
}

async function validateDocument(doc) {
  const validate = await schemaValidator(doc?.apiVersion, doc?.kind);
  if (!validate) return [`no Strimzi schema for ${doc?.apiVersion} ${doc?.kind}`];
  const records = [];
  const ok = validate(track(doc, "", records));
  const errors = ok
    ? []
    : (validate.errors ?? []).map((e) => `${e.instancePath || "/"}: ${e.keyword} ${JSON.stringify(e.params)}`);
  return errors.concat(unknownFields(records));
}

const docs = JSON.parse(readFileSync(0, "utf8"));
if (!Array.isArray(docs)) throw new Error("stdin must be a JSON array of documents");
const results = [];
for (const doc of docs) {
  results.push({ kind: doc?.kind, name: doc?.metadata?.name, errors: await validateDocument(doc) });
}
process.stdout.write(JSON.stringify(results) + "\n");
process.exitCode = results.some((r) => r.errors.length > 0) ? 1 : 0;
