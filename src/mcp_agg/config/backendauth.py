"""A `[[servers]]` entry's `auth`: how the gateway signs in to a remote backend."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator

from mcp_agg.config.base import StrictModel

__all__ = ["BackendOAuthConfig"]


class BackendOAuthConfig(StrictModel):
    """`auth = { type = "oauth", ... }`: the gateway is an OAuth 2.1 client of the backend.

    Everything else (the authorization server, its endpoints, the client's registration)
    is discovered from the backend's 401; `client_id`/`client_secret` are for an
    authorization server that offers no dynamic registration, `client_metadata_url` for
    one that takes a Client ID Metadata Document the operator publishes.
    """

    type: Literal["oauth"]
    #: Scopes asked for at sign-in; empty: what the backend's 401 or metadata names.
    scopes: list[Annotated[str, Field(min_length=1, pattern=r"^\S+$")]] = []
    client_id: Annotated[str, Field(min_length=1)] | None = None
    client_secret: Annotated[str, Field(min_length=1)] | None = None
    #: An HTTPS URL serving the gateway's Client ID Metadata Document: its client_id
    #: where the authorization server supports such documents (else it registers).
    client_metadata_url: str | None = None
    #: One token set per caller of the HTTP front, instead of one for the gateway
    #: (docs/signing-in.md, "A team gateway"); what it needs is checked with the
    #: whole file (config/document.py).
    per_user: bool = False

    @field_validator("client_metadata_url")
    @classmethod
    def _metadata_url(cls, value: str | None) -> str | None:
        if value is not None and not _is_client_metadata_url(value):
            raise ValueError(
                "must be an https:// URL with a path, e.g. https://example.com/mcp-agg.json"
            )
        return value


def _is_client_metadata_url(url: str) -> bool:
    """The SDK's `mcp.client.auth.utils.is_valid_client_metadata_url`, so a URL it would
    refuse at the first request fails here. Not imported from there: importing any of
    `mcp` imports its whole client and server, which `mcp-agg check` does not need
    (docs/benchmarks.md, "Startup and import time"); a test holds the two to agreeing."""
    try:
        parts = urlparse(url)
    except ValueError:
        return False
    return parts.scheme == "https" and parts.path not in ("", "/")
