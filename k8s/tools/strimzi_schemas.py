"""Writes the JSON Schemas of the Strimzi custom resources that ``k8s/`` uses (``k8s/schemas/strimzi/``), which
``tests/k8s`` checks the rendered documents against with check-jsonschema. A development-time tool: run it
once per Strimzi upgrade, commit its output; nothing runs it at test time and nothing needs Node.

Provenance. Strimzi publishes its CRDs (``openAPIV3Schema``) only in its release assets and Helm chart, on no
package registry. The npm package ``@kubernetes-models/strimzi-kafka-operator`` is generated from those
release files (its ``package.json`` names ``strimzi-crds-0.49.0.yaml`` and ``strimzi-crds-1.0.0.yaml``) but
ships each schema compiled into an Ajv standalone validator (``_schemas/<Group><Version><Kind>.js``), not as
JSON. The generated code is regular: one function per sub-schema, each error it can report carrying its
``keyword`` and ``params`` (``type``, ``enum``, ``required``, ``minimum``, ``maximum``, ``minItems``,
``pattern``, ``oneOf``, ``anyOf``), and each declared property checked by a call on ``data.<name>``. This
script reads that code back into the schema it was compiled from::

    cd "$(mktemp -d)" && npm pack @kubernetes-models/strimzi-kafka-operator@1.0.1 && tar xzf *.tgz
    python k8s/tools/strimzi_schemas.py "$PWD/package"

Unknown fields. The API server prunes (and ``kubectl apply`` refuses) fields a structural CRD does not
declare, so every object schema that declares properties gets ``additionalProperties: false``; objects
declared without properties (``x-kubernetes-preserve-unknown-fields``, e.g. ``spec.kafka.config``, and maps)
stay open. ``metadata`` is the API server's ObjectMeta: only its type is checked here.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = "@kubernetes-models/strimzi-kafka-operator"
PACKAGE_VERSION = "1.0.1"
STRIMZI_VERSION = "1.0.0"
# (group, version, kind) of every Strimzi resource k8s/ uses; tests/k8s fails on a kind without a schema.
RESOURCES = [
    ("kafka.strimzi.io", "v1", "Kafka"),
    ("kafka.strimzi.io", "v1", "KafkaNodePool"),
    ("kafka.strimzi.io", "v1", "KafkaTopic"),
]
OUT = Path(__file__).resolve().parent.parent / "schemas" / "strimzi"
_GROUP_PREFIX = {"kafka.strimzi.io": "KafkaStrimziIo", "core.strimzi.io": "CoreStrimziIo"}

_FUNCTION = re.compile(
    r"function (validate\d+)\(data,\{instancePath=\"\",parentData,parentDataProperty,rootData=data\}=\{\}\)\{"
)
_ERROR = re.compile(r"let err\d+=\{instancePath,schemaPath:\"#/(\w+)\",keyword:\"(\w+)\",params:\{")
_PROPERTY = re.compile(r"void 0!==data(?:\.([A-Za-z_$][\w$]*)|\[(\"(?:[^\"\\]|\\.)*\")\])&&\((validate\d+)\(")
_ITEMS = re.compile(r"(validate\d+)\(data\[i0\],")
_ON_DATA = re.compile(r"(validate\d+)\(data,\{instancePath,parentData")
_ENUM = re.compile(r"let (schema\d+_enum)=(\[.*?\]);")
_IMPORT = re.compile(r"import\{validate as (validate\d+)\}from\"([^\"]+)\"")


@dataclass
class Compiled:
    """What one generated function checks."""

    types: list[str] = field(default_factory=list)
    nullable: bool = False
    checks: dict[str, Any] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    items: str | None = None
    branches: list[str] = field(default_factory=list)


def _js_value(text: str, at: int, enums: dict[str, Any]) -> tuple[Any, int]:
    """The JS literal (string, number, identifier, array) at ``text[at:]`` and where it ends."""
    if text[at] == '"':
        end = at + 1
        while text[end] != '"':
            end += 2 if text[end] == "\\" else 1
        return json.loads(text[at : end + 1]), end + 1
    match = re.compile(r"-?[\d.]+(?:e[-+]?\d+)?|[A-Za-z_$][\w$]*|!0|!1").match(text, at)
    assert match, text[at : at + 40]
    token = match.group()
    if token in ("!0", "!1"):
        return token == "!0", match.end()
    if re.fullmatch(r"-?[\d.]+(?:e[-+]?\d+)?", token):
        return json.loads(token), match.end()
    return enums.get(token, token), match.end()


def _params(text: str, at: int, enums: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    while text[at] != "}":
        key = re.compile(r"([A-Za-z_$][\w$]*):").match(text, at)
        assert key, text[at : at + 40]
        params[key.group(1)], at = _js_value(text, key.end(), enums)
        if text[at] == ",":
            at += 1
    return params


def parse(code: str) -> tuple[str, dict[str, Compiled], set[str]]:
    """The root function, every generated function's checks, and the imported (ObjectMeta) ones."""
    enums = {name: json.loads(value) for name, value in _ENUM.findall(code)}
    imported = {name for name, _ in _IMPORT.findall(code)}
    root = re.search(r"export const validate=(validate\d+);", code)
    assert root
    starts = [(m.group(1), m.end()) for m in _FUNCTION.finditer(code)]
    functions: dict[str, Compiled] = {}
    for index, (name, start) in enumerate(starts):
        end = starts[index + 1][1] if index + 1 < len(starts) else len(code)
        body = code[start:end]
        compiled = Compiled()
        composite = None
        for error in _ERROR.finditer(body):
            where, keyword = error.group(1), error.group(2)
            assert where == keyword, (name, where, keyword)
            params = _params(body, error.end(), enums)
            if keyword == "type":
                compiled.types.append(params["type"])
                compiled.nullable = body[max(0, error.start() - 16) : error.start()].endswith(
                    "&&null!==data){"
                )
            elif keyword == "enum":
                compiled.checks["enum"] = params["allowedValues"]
            elif keyword == "required":
                compiled.required.append(params["missingProperty"])
            elif keyword in ("minimum", "maximum"):
                exclusive = params["comparison"] in (">", "<")
                compiled.checks[("exclusiveM" + keyword[1:]) if exclusive else keyword] = params["limit"]
            elif keyword in ("minItems", "maxItems", "minLength", "maxLength"):
                compiled.checks[keyword] = params["limit"]
            elif keyword == "pattern":
                compiled.checks["pattern"] = params["pattern"]
            elif keyword in ("oneOf", "anyOf"):
                composite = keyword
            else:
                raise ValueError(f"{name}: keyword {keyword} is not handled")
        on_data = _ON_DATA.findall(body)
        if composite:
            compiled.checks[composite] = on_data
        elif on_data:
            compiled.branches = on_data
        for attribute, quoted, function in _PROPERTY.findall(body):
            compiled.properties[attribute or json.loads(quoted)] = function
        items = _ITEMS.findall(body)
        if items:
            compiled.items = items[0]
        functions[name] = compiled
    return root.group(1), functions, imported


def schema_of(name: str, functions: dict[str, Compiled], imported: set[str], *, branch: bool = False) -> Any:
    """The JSON Schema that function ``name`` was compiled from; ``branch``: a oneOf/anyOf alternative."""
    if name in imported:
        return {"type": "object"}  # ObjectMeta: the API server's own
    compiled = functions[name]
    schema: dict[str, Any] = {}
    if compiled.types:
        (kind,) = compiled.types
        schema["type"] = [kind, "null"] if compiled.nullable else kind
    for keyword, value in compiled.checks.items():
        if keyword in ("oneOf", "anyOf"):
            schema[keyword] = [schema_of(b, functions, imported, branch=True) for b in value]
        else:
            schema[keyword] = value
    if compiled.required:
        schema["required"] = compiled.required
    if compiled.properties:
        schema["properties"] = {p: schema_of(f, functions, imported) for p, f in compiled.properties.items()}
        if not branch:
            schema["additionalProperties"] = False
    if compiled.items:
        schema["items"] = schema_of(compiled.items, functions, imported)
    if compiled.branches:
        (only,) = compiled.branches
        inner = schema_of(only, functions, imported, branch=branch)
        if compiled.nullable or not schema:
            return inner if not schema else {**schema, "allOf": [inner]}
        schema["allOf"] = [inner]
    return schema


def write(package: Path) -> list[Path]:
    written = []
    for group, version, kind in RESOURCES:
        source = package / "_schemas" / f"{_GROUP_PREFIX[group]}{version.capitalize()}{kind}.js"
        root, functions, imported = parse(source.read_text(encoding="utf-8"))
        schema = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$comment": (
                f"Strimzi {STRIMZI_VERSION} CRD of {kind}.{group}/{version}, read back from {PACKAGE}@"
                f"{PACKAGE_VERSION}/{source.relative_to(package)} by k8s/tools/strimzi_schemas.py"
            ),
            **schema_of(root, functions, imported),
        }
        target = OUT / group / version / f"{kind.lower()}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(schema, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} <unpacked {PACKAGE}@{PACKAGE_VERSION} directory>")
    package_dir = Path(sys.argv[1])
    declared = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))["version"]
    if declared != PACKAGE_VERSION:
        sys.exit(f"{package_dir} holds {PACKAGE}@{declared}, not {PACKAGE_VERSION}")
    for path in write(package_dir):
        print(path)
