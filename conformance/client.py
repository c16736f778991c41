"""The gateway's own backend client as the conformance suite's client under test.

    node .../conformance/dist/index.js client --suite auth \\
        --command "python conformance/client.py"

The suite appends the URL of the MCP server it runs for a scenario. This connects to it
exactly as a `[[servers]]` entry with `auth = { type = "oauth" }` is connected: the same
config model, the same transport (`backend/transports/http.py`) and OAuth provider
(`backend/oauth/`), with one difference a gateway has no use for: no person signs in, so
`FollowSignIn` requests the authorization URL itself and takes the code from the redirect.
It lists the tools and calls each. Its tokens go to a throwaway data directory, never
the user's keyring. Exit 0 when the calls were answered.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

#: A throwaway home for the tokens, set before the vault is chosen: no keyring, a
#: fresh data directory per run, removed when the run ends (the suite runs this once
#: per scenario: every run would otherwise leave a directory with its tokens behind).
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="mcp-agg-conformance-")

from fastmcp import Client

from mcp_agg.backend.oauth.signin import FollowSignIn
from mcp_agg.backend.transports.http import http_transport
from mcp_agg.config import ReplicaSpec, ServerConfig

#: The last revision of the handshake era: older and equal ones are spoken as "legacy".
_HANDSHAKE_ERA_LAST = "2025-11-25"


#: The Client ID Metadata Document URL the suite expects a client to identify itself with
#: where the authorization server supports them (it fetches nothing from it).
CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json"


def server_entry(url: str, context: dict[str, object]) -> ServerConfig:
    """The `[[servers]]` entry for `url`, with the client a scenario pre-registered."""
    auth: dict[str, object] = {"type": "oauth", "client_metadata_url": CLIENT_METADATA_URL}
    for key in ("client_id", "client_secret"):
        if isinstance(context.get(key), str):
            auth[key] = context[key]
    return ServerConfig.model_validate({"name": "conformance", "url": url, "auth": auth})


#: A value of each JSON Schema type, for a tool's required arguments. The string is not
#: ASCII, so a parameter mirrored into an `Mcp-Param-*` header (SEP-2243) takes the
#: client's Base64 form.
_SAMPLES: dict[str, object] = {"integer": 1, "number": 1, "string": "é", "boolean": True}


def sample_arguments(schema: dict[str, Any]) -> dict[str, object]:
    """Arguments for a tool's required properties: the suite checks the call, not values."""
    properties = schema.get("properties") or {}
    return {
        name: _SAMPLES.get(str(properties.get(name, {}).get("type")), {})
        for name in schema.get("required") or []
    }


async def main(url: str) -> int:
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    spec = ReplicaSpec("conformance", "conformance-1", server_entry(url, context), Path.cwd())
    version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION", "")
    mode = "legacy" if version and version <= _HANDSHAKE_ERA_LAST else "auto"
    transport = http_transport(spec, sign_in=FollowSignIn())
    async with Client(transport, name="mcp-agg-conformance", mode=mode) as client:
        tools = await client.list_tools()
        print(f"tools: {[tool.name for tool in tools]}", file=sys.stderr)
        for tool in tools:  # as a gateway calls whichever its clients ask for
            arguments = sample_arguments(tool.input_schema)
            result = await client.call_tool_mcp(tool.name, arguments)
            print(f"called {tool.name}: error={result.is_error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(anyio.run(main, sys.argv[-1]))
    finally:
        shutil.rmtree(os.environ["XDG_DATA_HOME"], ignore_errors=True)
