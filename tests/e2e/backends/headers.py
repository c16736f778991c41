"""An HTTP backend that shows the request headers it received, to prove what reaches it.

`headers` returns the HTTP headers of the request that carried the call (every header,
credentials included) and appends them as one JSON line to `--record-file`, so a test can
also see what arrived on requests other than the call (initialize, listings).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fastmcp import FastMCP
from fastmcp.server.dependencies import get_http_headers
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext

parser = argparse.ArgumentParser()
parser.add_argument("--record-file", required=True)
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()

mcp = FastMCP("headers")


def _record() -> dict[str, str]:
    headers = get_http_headers(include_all=True)
    with Path(args.record_file).open("a", encoding="utf-8") as out:
        out.write(json.dumps(headers) + "\n")
    return headers


class RecordEveryRequest(Middleware):
    async def on_request(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        _record()
        return await call_next(context)


mcp.add_middleware(RecordEveryRequest())


@mcp.tool
def headers() -> dict[str, str]:
    """The HTTP headers of the request that carried this call."""
    return _record()


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=args.port, show_banner=False)
