"""LocalTool: a tool the gateway answers itself, listed and called beside the backends'.

Fan-out tools (`[[fanout]]`), the gateway's own `gateway_health` and `gateway_metrics`,
and the tools of search mode are local tools. Each one makes its call in `relay`,
which returns the result in its wire form, as a backend's result is relayed; a call
takes the same path as a backend tool's (the call pipeline: limits, audit, metrics).
"""

from __future__ import annotations

from typing import Any, ClassVar

from mcp_agg.components.forwarding import PipelineTool

__all__ = ["LocalTool", "error_result"]


class LocalTool(PipelineTool):
    """A tool of the gateway's own; subclasses implement `relay`."""

    #: Whether `relay` makes its call through the call pipeline itself (search mode's
    #: call tool): the gateway's rate and argument limits then apply to that call only.
    relays_calls: ClassVar[bool] = False

    @property
    def server(self) -> str:
        """What the audit log and metrics name as the tool's server."""
        return "gateway"


def error_result(text: str) -> dict[str, Any]:
    """A tool error result in wire form: what a client reads when a call failed.

    Complete as it is (`resultType`), so it can go to a modern-era client unchanged.
    """
    return {"content": [{"type": "text", "text": text}], "isError": True, "resultType": "complete"}
