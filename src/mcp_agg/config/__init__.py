"""servers.toml: the pydantic models, `${VAR}` expansion, discovery and the mcpServers import.

Every error names the file, the field path and the problem, because the person reading it
has to find the line to fix; unknown keys are errors, because a typo must not pass silently.

The models are in `gateway`, `security`, `servers`, `fanout` and `document` (`Config`,
the whole file); reading a file is `loading`, which goes through `profiles`, `variables`
and `validation`; `mcpservers` translates the JSON configs of MCP clients (Claude Desktop,
VS Code, Cursor, Claude Code). Import from here.
"""

from __future__ import annotations

from mcp_agg.config.base import BalancerName
from mcp_agg.config.document import Config
from mcp_agg.config.fanout import FanoutConfig
from mcp_agg.config.gateway import BreakerConfig, GatewayConfig, RetryConfig, TracingConfig
from mcp_agg.config.loading import Imported, find_config, import_mcp_servers, load_config
from mcp_agg.config.security import (
    AdminConfig,
    AuthConfig,
    RateConfig,
    RateLimitConfig,
    RoleConfig,
    TokenConfig,
)
from mcp_agg.config.servers import ReplicaSpec, ServerConfig
from mcp_agg.config.store import StoreConfig
from mcp_agg.config.validation import config_from_raw, describe_errors

__all__ = [
    "AdminConfig",
    "AuthConfig",
    "BalancerName",
    "BreakerConfig",
    "Config",
    "FanoutConfig",
    "GatewayConfig",
    "Imported",
    "RateConfig",
    "RateLimitConfig",
    "ReplicaSpec",
    "RetryConfig",
    "RoleConfig",
    "ServerConfig",
    "StoreConfig",
    "TokenConfig",
    "TracingConfig",
    "config_from_raw",
    "describe_errors",
    "find_config",
    "import_mcp_servers",
    "load_config",
]
