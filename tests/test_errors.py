"""Tests for mcp_agg.errors: the exception tree and failure classification (docs/resilience.md)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from mcp_agg.errors import (
    CatalogError,
    ConfigError,
    FailureKind,
    GatewayError,
    NameCollisionError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRequestError,
    UpstreamSessionExpired,
    UpstreamTimeout,
    UpstreamUnavailable,
    classify,
    connection_lost,
    counts_against_replica,
    may_have_run,
)

# ---------------------------------------------------------------------------- the tree


def test_exception_tree() -> None:
    assert issubclass(ConfigError, GatewayError)
    assert issubclass(CatalogError, GatewayError)
    assert issubclass(NameCollisionError, CatalogError)
    assert issubclass(UpstreamError, GatewayError)
    assert issubclass(UpstreamUnavailable, UpstreamError)
    assert issubclass(UpstreamConnectError, UpstreamError)
    assert issubclass(UpstreamRequestError, UpstreamError)
    assert issubclass(UpstreamSessionExpired, UpstreamError)
    # Refused for its session, the request never ran: not a request error.
    assert not issubclass(UpstreamSessionExpired, UpstreamRequestError)
    assert issubclass(UpstreamTimeout, UpstreamRequestError)


def test_upstream_error_carries_replica() -> None:
    exc = UpstreamRequestError("boom", replica="time#0")
    assert exc.replica == "time#0"
    assert str(exc) == "boom"
    assert UpstreamUnavailable("none").replica is None


# ---------------------------------------------------------------------------- classify


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (UpstreamUnavailable("no replica", replica="a"), FailureKind.NOT_SENT),
        (UpstreamConnectError("refused", replica="a"), FailureKind.NOT_SENT),
        (UpstreamRequestError("reset", replica="a"), FailureKind.BROKEN),
        (UpstreamTimeout("slow", replica="a"), FailureKind.BROKEN),
        (UpstreamSessionExpired("gone", replica="a"), FailureKind.SESSION_EXPIRED),
        (MCPError(-32000, "Connection closed"), FailureKind.BROKEN),
        (MCPError(-32001, "Request timed out"), FailureKind.BROKEN),
        (MCPError(-32602, "Invalid params"), FailureKind.PROTOCOL),
        (MCPError(-32601, "Method not found"), FailureKind.PROTOCOL),
        (MCPError(-32600, "Invalid request"), FailureKind.PROTOCOL),
        (MCPError(-32603, "Internal error in the tool"), FailureKind.PROTOCOL),
        (MCPError(-32603, "HTTP 503 Service Unavailable"), FailureKind.BROKEN),
        (MCPError(-32600, "Session not found"), FailureKind.SESSION_EXPIRED),
        (MCPError(-32000, "Bad Request: Session not found"), FailureKind.SESSION_EXPIRED),
        (MCPError(-32001, "session terminated"), FailureKind.SESSION_EXPIRED),
        (httpx2.ConnectError("connection refused"), FailureKind.NOT_SENT),
        (ConnectionRefusedError(111, "Connection refused"), FailureKind.NOT_SENT),
        (TimeoutError(), FailureKind.BROKEN),
        (anyio.ClosedResourceError(), FailureKind.BROKEN),
        (anyio.BrokenResourceError(), FailureKind.BROKEN),
        (anyio.EndOfStream(), FailureKind.BROKEN),
        (httpx2.ReadError("reset by peer"), FailureKind.BROKEN),
        (httpx2.ReadTimeout("read timed out"), FailureKind.BROKEN),
        (ConnectionResetError(104, "reset"), FailureKind.BROKEN),
        (BrokenPipeError(32, "broken pipe"), FailureKind.BROKEN),
        (RuntimeError("Client is not connected"), FailureKind.NOT_SENT),
        (RuntimeError("something else"), FailureKind.BROKEN),
        (ValueError("unexpected"), FailureKind.BROKEN),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_classify(exc: BaseException, kind: FailureKind) -> None:
    assert classify(exc) is kind


def test_classify_session_message_is_case_insensitive() -> None:
    assert classify(MCPError(-32600, "SESSION NOT FOUND")) is FailureKind.SESSION_EXPIRED


def test_classify_connect_timeout_is_not_sent() -> None:
    # A connect timeout, like a refused connection, fails before a byte of the request
    # went out: the failure classification puts it in the "failed before the request was sent" row.
    assert classify(httpx2.ConnectTimeout("timed out connecting")) is FailureKind.NOT_SENT


# ------------------------------------------------------------------- counts_against_replica


@pytest.mark.parametrize(
    "exc",
    [
        UpstreamRequestError("reset", replica="a"),
        UpstreamTimeout("slow", replica="a"),
        UpstreamConnectError("refused", replica="a"),
        MCPError(-32000, "Connection closed"),
        MCPError(-32001, "Request timed out"),
        TimeoutError(),
        anyio.ClosedResourceError(),
        httpx2.ReadError("reset by peer"),
    ],
    ids=lambda exc: f"{type(exc).__name__}:{exc}",
)
def test_counts_against_replica(exc: BaseException) -> None:
    assert counts_against_replica(exc) is True


@pytest.mark.parametrize(
    "exc",
    [
        UpstreamUnavailable("circuit open", replica="a"),
        UpstreamUnavailable("no replica"),
        MCPError(-32602, "Invalid params"),
        MCPError(-32601, "Method not found"),
        MCPError(-32600, "Session not found"),
        MCPError(-32000, "Session not found"),
        UpstreamSessionExpired("refused for its session", replica="a"),
        RuntimeError("Client is not connected"),
    ],
    ids=lambda exc: f"{type(exc).__name__}:{exc}",
)
def test_does_not_count_against_replica(exc: BaseException) -> None:
    assert counts_against_replica(exc) is False


@pytest.mark.parametrize(
    "exc",
    [httpx2.ConnectError("connection refused"), ConnectionRefusedError(111, "refused")],
    ids=["httpx2.ConnectError", "ConnectionRefusedError"],
)
def test_raw_connect_errors_count_against_replica(exc: BaseException) -> None:
    # The failure classification: a failure before sending counts against the replica for
    # "connect errors only"; counts_against_replica's own docstring: "... or connecting failed".
    assert classify(exc) is FailureKind.NOT_SENT
    assert counts_against_replica(exc) is True


# ---------------------------------------------------------------------------- connection_lost


@pytest.mark.parametrize(
    ("exc", "lost"),
    [
        (MCPError(-32000, "Connection closed"), True),
        (MCPError(-32001, "Request timed out"), False),
        (MCPError(-32602, "Invalid params"), False),
        (MCPError(-32601, "Method not found"), False),
        (MCPError(-32600, "Session not found"), True),
        (UpstreamSessionExpired("refused for its session", replica="a"), True),
        (UpstreamTimeout("slow", replica="a"), False),
        (UpstreamRequestError("reset", replica="a"), False),
        (UpstreamUnavailable("none"), False),
        (TimeoutError(), False),
        (anyio.ClosedResourceError(), True),
        (anyio.BrokenResourceError(), True),
        (httpx2.ConnectError("refused"), True),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_connection_lost(exc: BaseException, lost: bool) -> None:
    assert connection_lost(exc) is lost


# ---------------------------------------------------------------------------- may_have_run


@pytest.mark.parametrize(
    ("exc", "ran"),
    [
        (UpstreamUnavailable("circuit open", replica="a"), False),
        (UpstreamConnectError("refused", replica="a"), False),
        (httpx2.ConnectError("refused"), False),
        (UpstreamSessionExpired("refused for its session", replica="a"), False),
        (MCPError(-32600, "Session not found"), False),
        (UpstreamRequestError("reset", replica="a"), True),
        (UpstreamTimeout("slow", replica="a"), True),
        (MCPError(-32000, "Connection closed"), True),
        (MCPError(-32602, "Invalid params"), True),
    ],
    ids=lambda value: f"{type(value).__name__}:{value}",
)
def test_may_have_run(exc: BaseException, ran: bool) -> None:
    assert may_have_run(exc) is ran


# ---------------------------------------------------------------------------- ConfigError


def test_config_error_with_source_and_loc() -> None:
    exc = ConfigError("must not be empty", source=Path("servers.toml"), loc="servers.time.command")
    assert str(exc) == "servers.toml: servers.time.command: must not be empty"
    assert exc.source == "servers.toml"
    assert exc.loc == "servers.time.command"
    assert exc.problem == "must not be empty"


def test_config_error_with_source_only() -> None:
    exc = ConfigError("not valid TOML", source="conf/servers.toml")
    assert str(exc) == "conf/servers.toml: not valid TOML"
    assert exc.source == "conf/servers.toml"
    assert exc.loc == ""


def test_config_error_with_loc_only() -> None:
    exc = ConfigError("unknown field", loc="gateway.nme")
    assert str(exc) == "gateway.nme: unknown field"
    assert exc.source is None


def test_config_error_plain() -> None:
    exc = ConfigError("no servers configured")
    assert str(exc) == "no servers configured"
    assert exc.source is None
    assert exc.loc == ""
    assert exc.problem == "no servers configured"


def test_config_error_is_raisable_as_gateway_error() -> None:
    with pytest.raises(GatewayError, match=r"^x\.toml: bad$"):
        raise ConfigError("bad", source="x.toml")
