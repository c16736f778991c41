"""A backend that hands out resource URIs everywhere a server can, each answer naming it.

Run twice with different `--label`s, its two copies list the same resource
(`shared://doc`) and template (`shared://item/{id}`) with different contents: a URI
collision. It hands out URIs in a tool's `_meta.ui.resourceUri`, in `resource_link`
and embedded `resource` items of a tool result and in a prompt's embedded resource. It
also reads `made://LABEL/...` URIs it never lists, and says "not found" for any other
label's.
"""

from __future__ import annotations

import argparse
from typing import Any

import mcp_types
from fastmcp import FastMCP
from fastmcp.prompts.base import Message
from fastmcp.tools.base import ToolResult
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

parser = argparse.ArgumentParser()
parser.add_argument("--label", required=True)
args = parser.parse_args()
LABEL: str = args.label
MADE = f"made://{LABEL}/"


class Linking(FastMCP[Any]):
    """Reads URIs it made (and lists none of them) besides its listed resources."""

    async def _on_read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.ReadResourceRequestParams
    ) -> Any:
        uri = str(params.uri)
        if uri.startswith(MADE):
            contents = mcp_types.TextResourceContents(uri=uri, text=f"{uri} of {LABEL}")
            return mcp_types.ReadResourceResult(contents=[contents])
        if uri.startswith("made://"):
            raise MCPError(mcp_types.INVALID_PARAMS, f"Resource not found: {uri!r}", {"uri": uri})
        return await super()._on_read_resource(ctx, params)


mcp = Linking("linking")


@mcp.resource("shared://doc", mime_type="text/plain")
def doc() -> str:
    return f"doc of {LABEL}"


@mcp.resource("shared://item/{id}", mime_type="text/plain")
def item(id: str) -> str:
    return f"item {id} of {LABEL}"


@mcp.tool(meta={"ui": {"resourceUri": "shared://doc"}})
def links() -> ToolResult:
    """Links to its listed resource, a URI of its template and one it made, and embeds
    its listed resource."""
    return ToolResult(
        content=[
            mcp_types.ResourceLink(type="resource_link", uri="shared://doc", name="doc"),
            mcp_types.ResourceLink(type="resource_link", uri="shared://item/7", name="item"),
            mcp_types.ResourceLink(type="resource_link", uri=f"{MADE}1", name="made"),
            mcp_types.EmbeddedResource(
                type="resource",
                resource=mcp_types.TextResourceContents(uri="shared://doc", text=doc()),
            ),
        ]
    )


@mcp.prompt
def cite() -> list[Message]:
    """Embeds its listed resource."""
    resource = mcp_types.TextResourceContents(uri="shared://doc", text=doc())
    return [Message(content=mcp_types.EmbeddedResource(type="resource", resource=resource))]


if __name__ == "__main__":
    mcp.run(show_banner=False)
