"""A stateless unit-conversion and arithmetic server: a pure-function demo backend.

Every tool is read-only and deterministic, which makes this backend the easy case for a
gateway (safe to retry, safe to cache) and a good contrast with the stateful notes server.
"""

from __future__ import annotations

import argparse
import json
import logging

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from mcp_types import ToolAnnotations
from typing_extensions import TypedDict

mcp = FastMCP(
    name="units",
    instructions="Converts between units of length, mass, temperature and time; basic math.",
)

# Expected user errors are logged at INFO so the default WARNING level keeps stderr quiet.
_QUIET = logging.INFO
_READ_ONLY = ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)

# Linear dimensions: how many base units (m, kg, s) one unit is worth.
_FACTORS: dict[str, dict[str, float]] = {
    "length": {
        "m": 1.0,
        "km": 1000.0,
        "cm": 0.01,
        "mm": 0.001,
        "mi": 1609.344,
        "ft": 0.3048,
        "in": 0.0254,
        "yd": 0.9144,
    },
    "mass": {"kg": 1.0, "g": 0.001, "lb": 0.45359237, "oz": 0.028349523125},
    "time": {"s": 1.0, "min": 60.0, "h": 3600.0, "day": 86400.0},
}
# Temperature is affine, not linear: (scale, offset) such that kelvin = value * scale + offset.
_TEMPERATURE: dict[str, tuple[float, float]] = {
    "C": (1.0, 273.15),
    "F": (5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
    "K": (1.0, 0.0),
}
UNITS: dict[str, list[str]] = {
    "length": list(_FACTORS["length"]),
    "mass": list(_FACTORS["mass"]),
    "temperature": list(_TEMPERATURE),
    "time": list(_FACTORS["time"]),
}
# Case-insensitive lookup ("KM", "c", "Min") mapped to (canonical unit, dimension).
_LOOKUP: dict[str, tuple[str, str]] = {
    unit.casefold(): (unit, dimension) for dimension, units in UNITS.items() for unit in units
}


class Conversion(TypedDict):
    """Conversion result: a TypedDict gives the tool a precise output schema.

    It comes from typing_extensions because pydantic rejects typing.TypedDict before 3.12.
    """

    value: float
    from_unit: str
    to_unit: str
    result: float
    dimension: str


def _resolve(unit: str) -> tuple[str, str]:
    found = _LOOKUP.get(unit.strip().casefold())
    if found is None:
        known = ", ".join(u for units in UNITS.values() for u in units)
        raise ToolError(f"unknown unit {unit!r}; known units: {known}", log_level=_QUIET)
    return found


def _convert(value: float, from_unit: str, to_unit: str) -> Conversion:
    src, src_dim = _resolve(from_unit)
    dst, dst_dim = _resolve(to_unit)
    if src_dim != dst_dim:
        raise ToolError(f"cannot convert {src} to {dst}: different dimensions", log_level=_QUIET)
    if src_dim == "temperature":
        scale_in, offset_in = _TEMPERATURE[src]
        scale_out, offset_out = _TEMPERATURE[dst]
        result = (value * scale_in + offset_in - offset_out) / scale_out
    else:
        result = value * _FACTORS[src_dim][src] / _FACTORS[src_dim][dst]
    return Conversion(
        value=value, from_unit=src, to_unit=dst, result=round(result, 12), dimension=src_dim
    )


@mcp.tool(annotations=_READ_ONLY)
def convert(value: float, from_unit: str, to_unit: str) -> Conversion:
    """Convert a value between two units of the same dimension (length, mass, temp, time)."""
    return _convert(value, from_unit, to_unit)


@mcp.tool(annotations=_READ_ONLY)
def add(a: float, b: float) -> float:
    """Return a + b."""
    return a + b


@mcp.tool(annotations=_READ_ONLY)
def multiply(a: float, b: float) -> float:
    """Return a * b."""
    return a * b


@mcp.tool(annotations=_READ_ONLY)
def divide(a: float, b: float) -> float:
    """Return a / b; dividing by zero is a tool error, not a crash."""
    if b == 0:
        raise ToolError("division by zero", log_level=_QUIET)
    return a / b


@mcp.resource("units://list", name="units", mime_type="application/json")
def units_list() -> str:
    """Supported units grouped by dimension."""
    return json.dumps(UNITS)


@mcp.prompt(name="explain_conversion")
def explain_conversion(value: str, from_unit: str, to_unit: str) -> str:
    """Ask the model to explain a conversion step by step, with the right answer to check."""
    request = f"Explain step by step how to convert {value} {from_unit} to {to_unit}."
    try:
        done = _convert(float(value), from_unit, to_unit)
    except (ValueError, ToolError) as exc:
        # Prompts take string arguments; a bad value or unit still yields a usable prompt.
        return f"{request}\nNote: the units server could not compute it ({exc})."
    return (
        f"{request}\nThe correct result is {done['result']} {done['to_unit']} "
        f"({done['dimension']}). Show the formula or factor used."
    )


def main(argv: list[str] | None = None) -> None:
    """Parse transport options; stdio is the default because that is how gateways spawn us."""
    parser = argparse.ArgumentParser(description="Demo MCP units server")
    parser.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3510)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.transport == "stdio":
        mcp.run(transport="stdio", show_banner=False, log_level=args.log_level)
    else:
        mcp.run(
            transport=args.transport,
            show_banner=False,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
        )


if __name__ == "__main__":
    main()
