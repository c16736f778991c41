"""Tests for mcp_agg.core.pipeline: the stages every tools/call goes through, in order."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from mcp_agg.config import Config, GatewayConfig, config_from_raw
from mcp_agg.core.cache import Caching
from mcp_agg.core.pipeline import CallPipeline
from mcp_agg.observability.audit import CallRecord
from mcp_agg.security.access import Visibility
from mcp_agg.security.limits import CallLimits
from mcp_agg.store import MemoryStore

OK = {"content": [{"type": "text", "text": "3"}]}


class Tool:
    server = "units"

    def __init__(self, name: str, wire: dict[str, Any] = OK, *, relays_calls: bool = False):
        self.name = name
        self.wire = wire
        self.relays_calls = relays_calls
        self.calls: list[dict[str, Any]] = []

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(arguments)
        return self.wire


def config(**server: Any) -> Config:
    """A config with one server `s` (`server` adds to its entry)."""
    return config_from_raw({"servers": [{"name": "s", "command": "python", **server}]}, None, {})


def pipeline(cache: Caching | None = None, **limits: Any) -> tuple[CallPipeline, list[CallRecord]]:
    records: list[CallRecord] = []
    catalog = SimpleNamespace(tool={"units_add": Tool("units_add")}.get)
    host = SimpleNamespace(
        catalog=catalog,
        visibility=Visibility(lambda: catalog),  # type: ignore[arg-type, return-value]
        limits=CallLimits(GatewayConfig.model_validate(limits), MemoryStore()),
        audit=None,
        observe_call=records.append,
        tracer=None,
        cache=cache or Caching(config()),
    )
    return CallPipeline(host), records  # type: ignore[arg-type]


def test_the_stages_in_order() -> None:
    calls, _ = pipeline()
    assert [stage.__name__ for stage in calls.stages] == ["record", "admit", "check_result"]


def test_the_cache_is_a_stage_only_while_a_server_caches_calls() -> None:
    cache = Caching(config(cache={"tools": ["*"], "ttl": 1}))
    calls, _ = pipeline(cache)
    assert calls.stages[2] is cache
    assert len(calls.stages) == 4
    cache.configure(config())  # a reload: no server caches calls any more
    calls.assemble()
    assert cache not in calls.stages


def test_lookup_is_the_catalog_as_the_caller_may_see_it() -> None:
    calls, records = pipeline()
    assert calls.lookup("units_add") is not None
    assert calls.lookup("units_nope") is None
    calls.unknown("units_nope", {})
    assert [(r.tool, r.outcome) for r in records] == [("units_nope", "unknown_tool")]


async def test_a_relayed_call_is_recorded_once() -> None:
    calls, records = pipeline()
    tool = Tool("units_add")
    assert await calls.call(tool, {"a": 1}) is OK
    assert tool.calls == [{"a": 1}]
    assert [(r.tool, r.server, r.outcome) for r in records] == [("units_add", "units", "ok")]


async def test_a_refusal_is_the_result_and_is_recorded() -> None:
    calls, records = pipeline(max_argument_bytes=10)
    tool = Tool("units_add")
    refused = await calls.call(tool, {"text": "x" * 20})
    assert refused["isError"] is True
    assert "over max_argument_bytes (10 bytes)" in refused["content"][0]["text"]
    assert tool.calls == []  # never relayed
    assert [r.outcome for r in records] == ["refused"]


async def test_a_result_over_its_size_is_refused_after_the_relay() -> None:
    calls, records = pipeline(max_result_bytes=10)
    tool = Tool("units_add", {"content": [{"type": "text", "text": "x" * 20}]})
    refused = await calls.call(tool, {})
    assert refused["isError"] is True
    assert "over max_result_bytes (10 bytes)" in refused["content"][0]["text"]
    assert tool.calls == [{}]
    assert [r.outcome for r in records] == ["refused"]


async def test_a_tool_that_relays_a_call_is_not_admitted_itself() -> None:
    calls, records = pipeline(max_argument_bytes=10)
    tool = Tool("gateway_call_tool", relays_calls=True)
    assert await calls.call(tool, {"text": "x" * 20}) is OK
    assert [r.outcome for r in records] == ["ok"]
