"""Tests for the tool runner's form (`mcp_agg.front.ui.runner`)."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_agg.front.ui.runner import Field, arguments_of, fields_of

SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "description": "what to say"},
        "count": {"type": "integer", "default": 2},
        "ratio": {"type": "number"},
        "loud": {"type": "boolean"},
        "unit": {"enum": ["km", "mi"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    },
    "required": ["text", "loud"],
}


def test_fields_follow_the_schema() -> None:
    fields = fields_of(SCHEMA)
    assert [(f.name, f.kind, f.required) for f in fields] == [
        ("text", "text", True),
        ("count", "integer", False),
        ("ratio", "number", False),
        ("loud", "boolean", True),
        ("unit", "choice", False),
        ("tags", "json", False),
        ("either", "json", False),
    ]
    assert fields[0].description == "what to say"
    assert fields[1].default == "2"
    assert fields[4].choices == ("km", "mi")
    assert fields_of({"type": "object"}) == []


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"text": "hi"}, {"text": "hi", "loud": False}),
        ({"text": "", "loud": "on"}, {"text": "", "loud": True}),
        (
            {"text": "a", "count": "3", "ratio": "0.5", "unit": "km", "tags": '["x"]'},
            {"text": "a", "count": 3, "ratio": 0.5, "loud": False, "unit": "km", "tags": ["x"]},
        ),
        (
            {"text": "a", "ratio": "2", "either": "7"},
            {"text": "a", "ratio": 2, "loud": False, "either": 7},
        ),
        ({"text": "a", "count": "", "unit": "", "tags": ""}, {"text": "a", "loud": False}),
    ],
)
def test_arguments_from_the_form(form: dict[str, str], expected: dict[str, Any]) -> None:
    assert arguments_of(fields_of(SCHEMA), form) == expected


@pytest.mark.parametrize(
    ("form", "named"),
    [({"count": "2.5"}, "count"), ({"ratio": "lots"}, "ratio"), ({"tags": "[x"}, "tags")],
)
def test_a_value_not_of_its_type_names_the_field(form: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=f"^{named}: not a valid"):
        arguments_of(fields_of(SCHEMA), {"text": "a", **form})


def test_a_field_is_a_value() -> None:
    assert Field("a", "text", True) == Field("a", "text", True)
