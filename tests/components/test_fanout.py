"""Tests for mcp_agg.components.fanout: each strategy and the result's `_meta`, over fake targets;
the catalog side (which targets a fan-out gets, what it logs); and the group's call on
one given replica."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import anyio
import mcp_types
import pytest

from mcp_agg.backend.upstream import Listing, ReplicaState, Upstream
from mcp_agg.components.fanout import META_KEY, FanoutTool, fanout_tools
from mcp_agg.config import Config, FanoutConfig, config_from_raw
from mcp_agg.core.catalog import Catalog, build_catalog
from mcp_agg.errors import UpstreamUnavailable
from mcp_agg.resilience.group import ReplicaGroup
from tests.fakes import connected, upstreams


def text(value: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": value}], "isError": False}


def structured(value: dict[str, Any], shown: str) -> dict[str, Any]:
    return {**text(shown), "structuredContent": value}


def failure(value: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": value}], "isError": True}


@dataclass
class Fake:
    """A fan-out target: answers `answer` (or raises `error`) once `gate` is set."""

    name: str
    answer: dict[str, Any] | None = None
    error: Exception | None = None
    gate: anyio.Event | None = None
    server: str = "fake"
    calls: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False
    done: anyio.Event = field(default_factory=anyio.Event)

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(arguments)
        try:
            if self.gate is not None:
                await self.gate.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        self.done.set()
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer


def hung(name: str) -> Fake:
    """A target that never answers (its gate is never set)."""
    return Fake(name, answer=text("late"), gate=anyio.Event())


def fanout(
    strategy: str, *targets: Fake, timeout: float = 10, missing: dict[str, str] | None = None
) -> FanoutTool:
    names = [t.name for t in targets] + list(missing or {})
    config = FanoutConfig(name="fan", targets=names, strategy=strategy, timeout=timeout)  # type: ignore[arg-type]
    return FanoutTool.create(config, list(targets), missing=missing)


def meta(result: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = result["_meta"][META_KEY]
    return found


def texts(result: dict[str, Any]) -> list[str]:
    return [block["text"] for block in result["content"] if block["type"] == "text"]


# ---------------------------------------------------------------------------- all-wait


async def test_all_wait_labels_every_result() -> None:
    good = Fake("a", answer=structured({"n": 1}, "one"))
    bad = Fake("b", answer=failure("b broke"))
    broken = Fake("c", error=RuntimeError("boom"))
    result = await fanout("all-wait", good, bad, broken).relay({"q": "x"})

    assert result["isError"] is False  # one target succeeded
    assert texts(result) == ["[a] ok", "one", "[b] error", "b broke", "[c] error", "c: boom"]
    assert result["structuredContent"] == {
        "results": {
            "a": {"isError": False, "structuredContent": {"n": 1}, "text": "one"},
            "b": {"isError": True, "structuredContent": None, "text": "b broke"},
            "c": {"isError": True, "structuredContent": None, "text": "c: boom"},
        }
    }
    found = meta(result)
    assert (found["strategy"], found["contacted"], found["successful"], found["failed"]) == (
        "all-wait",
        3,
        1,
        2,
    )
    assert found["errors"] == {"b": "b broke", "c": "c: boom"}
    assert found["cancelled"] == []
    assert all(isinstance(found["latencies_ms"][t], float) for t in "abc")
    assert good.calls == bad.calls == broken.calls == [{"q": "x"}]


async def test_all_wait_is_an_error_only_when_every_target_failed() -> None:
    result = await fanout(
        "all-wait", Fake("a", answer=failure("no")), Fake("b", error=OSError("x"))
    ).relay({})
    assert result["isError"] is True
    assert meta(result)["successful"] == 0
    assert meta(result)["failed"] == 2


async def test_timeout_cancels_unfinished_targets() -> None:
    slow = hung("slow")
    with anyio.fail_after(5):
        result = await fanout("all-wait", Fake("fast", answer=text("hi")), slow, timeout=0.2).relay(
            {}
        )
    assert slow.cancelled
    found = meta(result)
    assert found["latencies_ms"]["slow"] is None
    assert isinstance(found["latencies_ms"]["fast"], float)
    assert "within the fan-out's timeout (0.2s)" in found["errors"]["slow"]
    assert found["cancelled"] == []  # cut off by the timeout: failed, not cancelled
    assert (found["successful"], found["failed"]) == (1, 1)
    assert texts(result)[:3] == ["[fast] ok", "hi", f"[slow] error: {found['errors']['slow']}"]
    assert result["isError"] is False


async def test_missing_targets_are_failed_with_their_reason() -> None:
    result = await fanout(
        "all-wait", Fake("a", answer=text("x")), missing={"gone": "server 'g' is down"}
    ).relay({})
    found = meta(result)
    assert (found["contacted"], found["successful"], found["failed"]) == (1, 1, 1)
    assert found["errors"] == {"gone": "server 'g' is down"}
    assert found["latencies_ms"]["gone"] is None
    assert "[gone] error: server 'g' is down" in texts(result)


# ---------------------------------------------------------------------------- first-success


async def test_first_success_returns_the_first_answer_and_cancels_the_rest() -> None:
    slow = hung("slow")
    fast = Fake("fast", answer={**structured({"v": 1}, "fast"), "_meta": {"own": 1}})
    result = await fanout("first-success", slow, fast).relay({})

    assert slow.cancelled
    assert result["structuredContent"] == {"v": 1}
    assert texts(result) == ["fast"]
    assert result["isError"] is False
    assert result["_meta"]["own"] == 1  # the winner's own _meta is kept
    found = meta(result)
    assert found["winner"] == "fast"
    assert found["cancelled"] == ["slow"]
    assert found["errors"] == {}
    assert found["latencies_ms"]["slow"] is None
    assert (found["contacted"], found["successful"], found["failed"]) == (2, 1, 0)


async def test_first_success_skips_errors() -> None:
    failing = Fake("failing", answer=failure("nope"))
    # Answers only after the failing one has: an error must not end the fan-out.
    late = Fake("late", answer=text("yes"), gate=failing.done)
    result = await fanout("first-success", failing, late).relay({})
    assert texts(result) == ["yes"]
    assert meta(result)["winner"] == "late"
    assert meta(result)["errors"] == {"failing": "nope"}


async def test_first_success_with_no_success_is_an_error() -> None:
    result = await fanout(
        "first-success", Fake("a", answer=failure("a: no")), Fake("b", error=ValueError("bad"))
    ).relay({})
    assert result["isError"] is True
    assert texts(result) == ["no target succeeded", "[a] error", "a: no", "[b] error", "b: bad"]
    assert meta(result)["winner"] is None


async def test_first_success_timeout_with_nothing_finished() -> None:
    one, two = hung("one"), hung("two")
    result = await fanout("first-success", one, two, timeout=0.1).relay({})
    assert result["isError"] is True
    assert one.cancelled
    assert two.cancelled
    assert meta(result)["latencies_ms"] == {"one": None, "two": None}
    assert set(meta(result)["errors"]) == {"one", "two"}


# ---------------------------------------------------------------------------- majority-vote


async def test_majority_two_of_three() -> None:
    result = await fanout(
        "majority-vote",
        Fake("a", answer=text("42")),
        Fake("b", answer=text("41")),
        Fake("c", answer=text("42")),
    ).relay({})
    assert result["isError"] is False
    assert texts(result) == ["42", "[majority] 2 of 3 targets agreed: a, c"]
    found = meta(result)
    assert found["agreed"] == 2
    assert found["votes"][0] == {"count": 2, "targets": ["a", "c"]}


async def test_majority_reached_early_cancels_the_rest() -> None:
    slow = hung("slow")
    result = await fanout(
        "majority-vote", Fake("a", answer=text("x")), slow, Fake("b", answer=text("x"))
    ).relay({})
    assert slow.cancelled
    assert result["isError"] is False
    assert meta(result)["cancelled"] == ["slow"]
    assert texts(result)[-1] == "[majority] 2 of 3 targets agreed: a, b"


async def test_no_majority_says_what_the_answers_were() -> None:
    result = await fanout(
        "majority-vote",
        Fake("a", answer=text("red")),
        Fake("b", answer=text("blue")),
        Fake("c", answer=failure("c is down")),
    ).relay({})
    assert result["isError"] is True
    message = texts(result)[0]
    assert "no majority: 2 of the 3 targets contacted had to agree" in message
    assert "- 1 answered red: a" in message
    assert "- 1 answered blue: b" in message
    assert "- c failed: c is down" in message
    assert meta(result)["agreed"] == 1


async def test_half_is_not_a_majority() -> None:
    # Two of four agree: not a strict majority (failed targets count against it).
    result = await fanout(
        "majority-vote",
        Fake("a", answer=text("x")),
        Fake("b", answer=text("x")),
        Fake("c", error=RuntimeError("down")),
        Fake("d", answer=failure("down too")),
    ).relay({})
    assert result["isError"] is True
    assert "- 2 answered x: a, b" in texts(result)[0]


async def test_majority_compares_structured_content_over_text() -> None:
    # Same structured content, different wording: they agree.
    result = await fanout(
        "majority-vote",
        Fake("a", answer=structured({"temp": 20}, "It is 20 degrees")),
        Fake("b", answer=structured({"temp": 20}, "20°C")),
        Fake("c", answer=structured({"temp": 25}, "It is 20 degrees")),
    ).relay({})
    assert result["isError"] is False
    assert result["structuredContent"] == {"temp": 20}
    assert meta(result)["votes"][0]["targets"] == ["a", "b"]


async def test_majority_compares_text_when_an_answer_has_no_structured_content() -> None:
    result = await fanout(
        "majority-vote",
        Fake("a", answer=structured({"temp": 20}, "20")),
        Fake("b", answer=structured({"temp": 21}, "20")),
        Fake("c", answer=text("20")),
    ).relay({})
    assert result["isError"] is False
    assert meta(result)["agreed"] == 3


async def test_majority_denominator_is_the_targets_contacted() -> None:
    result = await fanout(
        "majority-vote",
        Fake("a", answer=text("x")),
        Fake("b", answer=text("x")),
        missing={"gone": "not in the catalog"},
    ).relay({})
    assert result["isError"] is False
    assert texts(result)[-1] == "[majority] 2 of 2 targets agreed: a, b"
    assert meta(result)["failed"] == 1


# ---------------------------------------------------------------------------- the tool


def test_tool_definition() -> None:
    config = FanoutConfig(name="fan", targets=["a", "b"], strategy="all-wait")
    tool = FanoutTool.create(
        config, [Fake("a"), Fake("b")], parameters={"type": "object", "x": 1}, read_only=True
    )
    listed = tool.to_mcp_tool()
    assert listed.name == "fan"
    assert listed.input_schema == {"type": "object", "x": 1}
    assert listed.output_schema is None
    assert listed.annotations is not None
    assert listed.annotations.read_only_hint is True
    assert listed.description == "Calls a, b at once (all-wait)."
    assert tool.server == "fanout"


# ---------------------------------------------------------------------------- catalog side


def schema(*properties: str) -> dict[str, Any]:
    return {"type": "object", "properties": {p: {"type": "string"} for p in properties}}


def upstream(config: Config, index: int, tools: list[mcp_types.Tool] | None) -> Upstream:
    """A replica; `tools` None: never connected."""
    replica = Upstream(config.replica_specs()[index], connect_timeout=1)
    if tools is not None:
        connected(replica, Listing(tools=tuple(tools)))
    else:
        replica.state = ReplicaState.ERROR
        replica.stats.last_error = "connection refused"
    return replica


def read_only(name: str, *properties: str) -> mcp_types.Tool:
    return mcp_types.Tool(
        name=name,
        input_schema=schema(*properties),
        annotations=mcp_types.ToolAnnotations(read_only_hint=True),
    )


@dataclass
class Setup:
    gateway: SimpleNamespace
    build: Any

    def catalog(self) -> Catalog:
        groups = self.gateway.groups.values()
        result: Catalog = build_catalog(groups, "_", strict=True)
        return result


def setup(fanouts: list[dict[str, Any]], listings: dict[str, list[mcp_types.Tool] | None]) -> Setup:
    servers = [{"name": name, "command": "python"} for name in listings]
    config = config_from_raw({"servers": servers, "fanout": fanouts}, None, {})
    groups = {
        name: ReplicaGroup(name, [upstream(config, i, tools)], prefix=name, timeout=5)
        for i, (name, tools) in enumerate(listings.items())
    }
    gateway = SimpleNamespace(
        config=config, groups=groups, visibility=SimpleNamespace(allows=lambda name: True)
    )
    return Setup(gateway, fanout_tools(gateway))  # type: ignore[arg-type]


async def test_fanout_is_built_from_the_catalog(caplog: pytest.LogCaptureFixture) -> None:
    env = setup(
        [{"name": "fan", "targets": ["a_q", "b_q"]}],
        {"a": [read_only("q", "text")], "b": [read_only("q", "text")]},
    )
    tools = env.build(env.catalog())
    tool = tools["fan"]
    assert tool.targets == ("a_q", "b_q")
    assert tool.parameters == schema("text")
    assert tool.annotations.read_only_hint is True  # both targets are read-only
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_read_only_only_when_every_target_is() -> None:
    writer = mcp_types.Tool(name="q", input_schema=schema("text"))
    env = setup(
        [{"name": "fan", "targets": ["a_q", "b_q"]}], {"a": [read_only("q", "text")], "b": [writer]}
    )
    assert env.build(env.catalog())["fan"].annotations.read_only_hint is False


async def test_differing_schemas_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    env = setup(
        [{"name": "fan", "targets": ["a_q", "b_q"]}],
        {"a": [read_only("q", "text")], "b": [read_only("q", "query")]},
    )
    caplog.set_level(logging.WARNING, "mcp_agg.components.fanout")
    first = env.build(env.catalog())
    env.build(env.catalog())  # a rebuild with nothing new logs nothing new
    assert first["fan"].parameters == schema("text")  # the first target's
    warnings = [r.getMessage() for r in caplog.records if "schemas differ" in r.getMessage()]
    assert warnings == ["fan-out 'fan': the targets' input schemas differ; the tool takes 'a_q''s"]


async def test_unknown_and_down_targets(caplog: pytest.LogCaptureFixture) -> None:
    env = setup(
        [{"name": "fan", "targets": ["a_q", "a_typo", "down_q"]}],
        {"a": [read_only("q", "text")], "down": None},
    )
    tool = env.build(env.catalog())["fan"]
    assert tool.targets == ("a_q", "a_typo", "down_q")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "fan-out 'fan': unknown target 'a_typo': not in the catalog: no server offers a tool "
        "of that name"
    ]
    assert tool.annotations.read_only_hint is False  # unknown targets may not be read-only
    result = await tool.relay({})
    found = meta(result)
    assert found["errors"]["down_q"] == "not in the catalog: server 'down' is not available"
    assert found["errors"]["a_typo"].startswith("not in the catalog: no server")
    assert (found["contacted"], found["failed"]) == (1, 3)  # a_q's backend is not running


async def test_fanout_with_no_target_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    env = setup([{"name": "fan", "targets": ["x_q", "y_q"]}], {"a": [read_only("q")]})
    assert env.build(env.catalog()) == {}
    assert "fan-out 'fan': no target available: the tool is left out" in caplog.text


async def test_group_fanout_targets_every_replica() -> None:
    config = config_from_raw(
        {
            "servers": [{"name": "s", "command": "python", "replicas": 3}],
            "fanout": [{"name": "fan", "group": "s", "tool": "q"}],
        },
        None,
        {},
    )
    replicas = [upstream(config, i, [read_only("q", "text")]) for i in range(3)]
    group = ReplicaGroup("s", replicas, prefix="s", timeout=5)
    gateway = SimpleNamespace(
        config=config, groups={"s": group}, visibility=SimpleNamespace(allows=lambda name: True)
    )
    tools = fanout_tools(gateway)(build_catalog([group], "_", strict=True))  # type: ignore[arg-type]
    assert tools["fan"].targets == ("s-1", "s-2", "s-3")
    assert tools["fan"].description == "Calls tool 'q' on every replica of 's' at once (all-wait)."


async def test_group_fanout_without_the_tool_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    env = setup([{"name": "fan", "group": "a", "tool": "missing"}], {"a": [read_only("q")]})
    assert env.build(env.catalog()) == {}
    assert "server 'a' offers no tool 'missing' now" in caplog.text


# ---------------------------------------------------------------------------- one replica


def connected_group(size: int) -> tuple[ReplicaGroup, list[list[str]]]:
    """A group whose replicas answer calls with their own id, recording what they ran."""
    replicas = [
        connected(r, Listing(tools=(read_only("q"),)), session=True)
        for r in upstreams("s", replicas=size)
    ]
    seen: list[list[str]] = [[] for _ in replicas]
    for replica, log in zip(replicas, seen, strict=True):

        async def call_tool(
            name: str,
            arguments: dict[str, Any],
            *,
            meta: dict[str, Any] | None = None,
            replica: Upstream = replica,
            log: list[str] = log,
        ) -> dict[str, Any]:
            assert meta is not None
            log.append(meta["mcp-agg/idempotency-key"])
            return text(replica.id)

        replica.call_tool = call_tool  # type: ignore[method-assign]
    return ReplicaGroup("s", replicas, prefix="s", timeout=5), seen


async def test_call_tool_on_runs_on_that_replica_only() -> None:
    group, seen = connected_group(3)
    for _ in range(3):
        assert await group.call_tool_on(group.replicas[1], "q", {}) == text("s-2")
    assert [len(log) for log in seen] == [0, 3, 0]
    assert len(set(seen[1])) == 3  # an idempotency key per call


async def test_call_tool_on_a_down_replica_fails_with_its_reason() -> None:
    group, seen = connected_group(2)
    down = group.replicas[0]
    down.state = ReplicaState.ERROR
    down.stats.last_error = "process exited with 3"
    with pytest.raises(
        UpstreamUnavailable,
        match=r"s-1 is not available \(error\); last error: process exited with 3",
    ):
        await group.call_tool_on(down, "q", {})
    assert seen == [[], []]  # never balanced to the other replica


async def test_call_tool_on_respects_the_breaker() -> None:
    group, seen = connected_group(1)
    replica = group.replicas[0]
    for _ in range(replica.breaker.failure_threshold):
        replica.breaker.record_failure()
    with pytest.raises(UpstreamUnavailable, match="circuit open"):
        await group.call_tool_on(replica, "q", {})
    assert seen == [[]]


async def test_a_target_the_callers_roles_hide_is_not_called() -> None:
    allowed, hidden = Fake("a_q", answer=text("a")), Fake("b_q", answer=text("b"))
    config = FanoutConfig(name="fan", targets=["a_q", "b_q"], strategy="all-wait")
    tool = FanoutTool.create(config, [allowed, hidden], visible=lambda name: name != "b_q")
    result = await tool.relay({"q": 1})
    assert hidden.calls == []  # granting the fan-out does not grant its targets
    assert allowed.calls == [{"q": 1}]
    found = meta(result)
    assert found["errors"] == {"b_q": "not allowed for this caller"}
    assert (found["contacted"], found["successful"]) == (1, 1)
