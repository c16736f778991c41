"""The tool runner's form: one field per property of a tool's input schema, and the
call's arguments read back from the submitted form.

Scalars get inputs of their type (text, number, a checkbox, a choice for an `enum`);
anything else (objects, arrays, unions) a JSON text area. An empty optional field is
left out of the arguments, as a client that does not set it would; the backend judges
the rest (the runner sends what was typed, as the MCP Inspector does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Field", "arguments_of", "fields_of"]

Kind = Literal["text", "number", "integer", "boolean", "choice", "json"]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    required: bool
    description: str = ""
    choices: tuple[str, ...] = ()
    default: str = ""


def fields_of(schema: Mapping[str, Any]) -> list[Field]:
    """The form fields of an input schema's top-level properties, in schema order."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return []
    required = set(schema.get("required") or ())
    fields = []
    for name, spec in properties.items():
        spec = spec if isinstance(spec, Mapping) else {}
        kind = _kind(spec)
        default = spec.get("default")
        fields.append(
            Field(
                name=str(name),
                kind=kind,
                required=name in required,
                description=str(spec.get("description") or spec.get("title") or ""),
                choices=tuple(str(c) for c in spec.get("enum", ())) if kind == "choice" else (),
                default="" if default is None else _as_text(default, kind),
            )
        )
    return fields


def _kind(spec: Mapping[str, Any]) -> Kind:
    if isinstance(spec.get("enum"), list) and all(isinstance(c, str) for c in spec["enum"]):
        return "choice"
    kind = spec.get("type")
    if kind in ("string", "number", "integer", "boolean"):
        return "text" if kind == "string" else kind
    return "json"


def _as_text(value: Any, kind: Kind) -> str:
    if kind in ("json", "boolean") or not isinstance(value, str):
        return json.dumps(value)
    return value


def arguments_of(fields: list[Field], form: Mapping[str, str]) -> dict[str, Any]:
    """The call's arguments from a submitted form; ValueError naming the field whose
    value is not of its type."""
    arguments: dict[str, Any] = {}
    for field in fields:
        if field.kind == "boolean":
            if field.name in form:
                arguments[field.name] = True
            elif field.required:
                arguments[field.name] = False
            continue
        raw = form.get(field.name, "")
        if raw == "" and not (field.required and field.kind in ("text", "choice")):
            continue
        try:
            arguments[field.name] = _parse(field.kind, raw)
        except ValueError:
            raise ValueError(f"{field.name}: not a valid {field.kind} value: {raw!r}") from None
    return arguments


def _parse(kind: Kind, raw: str) -> Any:
    if kind == "integer":
        return int(raw)
    if kind == "number":
        number = float(raw)
        return int(number) if number.is_integer() and "." not in raw else number
    if kind == "json":
        return json.loads(raw)  # JSONDecodeError is a ValueError
    return raw
