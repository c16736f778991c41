"""Fan-out tools (`[[fanout]]`): one tool of the gateway's own that calls several at once.

A fan-out calls its targets concurrently, each through its own group's pipeline
(breaker, retries if safe, failover, deadline), and answers by its strategy:

- `first-success`: the first result that is not an error; the other calls are cancelled;
- `all-wait`: every target's result, each labelled with its target;
- `majority-vote`: the answer a strict majority of the targets contacted agree on
  (their structured content when all of them have one, else their text); an error
  result naming the answers and their counts when there is none.

The targets are exposed tool names (`targets`), or one tool on every replica of a group
(`group` + `tool`; each replica is a target, called on that replica itself). `timeout`
bounds the whole fan-out: calls still running then are cancelled. Every result carries
`_meta["mcp-agg/fanout"]` (see `FanoutTool`), which says what each target did.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types
from pydantic import PrivateAttr

from mcp_agg.components.forwarding import CallTarget, ForwardingTool, hop_wire
from mcp_agg.components.local import LocalTool, error_result
from mcp_agg.config import FanoutConfig
from mcp_agg.errors import RefusedError, UpstreamError
from mcp_agg.security.redact import redact

if TYPE_CHECKING:
    from mcp_agg.backend.upstream import Upstream
    from mcp_agg.core.catalog import Catalog, LocalTools
    from mcp_agg.core.views import FanoutHost
    from mcp_agg.resilience.group import ReplicaGroup

__all__ = ["META_KEY", "FanoutTool", "fanout_tools"]

logger = logging.getLogger(__name__)

#: The `_meta` key of every fan-out result.
META_KEY = "mcp-agg/fanout"
#: How much of one target's error, or of one answer, a result quotes.
_QUOTE = 300


@dataclass(frozen=True, slots=True)
class _Answer:
    """One target's finished call."""

    wire: dict[str, Any]
    latency_ms: float

    @property
    def failed(self) -> bool:
        return bool(self.wire.get("isError"))

    @property
    def text(self) -> str:
        return _text(self.wire)


@dataclass(slots=True)
class _Round:
    """One call of a fan-out: what each target did, as it happens."""

    strategy: str
    labels: tuple[str, ...]
    #: Targets not called: not in the catalog, with the reason.
    missing: dict[str, str]
    answers: dict[str, _Answer] = field(default_factory=dict)
    #: Targets whose call was still running when the fan-out ended: cancelled, with
    #: the reason that holds unless the strategy had decided (then they were not needed).
    unfinished: dict[str, str] = field(default_factory=dict)
    #: Whether the strategy had its answer before every call finished.
    decided: bool = False

    @property
    def contacted(self) -> list[str]:
        return [label for label in self.labels if label not in self.missing]

    def meta(self, **extra: Any) -> dict[str, Any]:
        """`_meta["mcp-agg/fanout"]` of this round's result."""
        errors = {**self.missing}
        for label, answer in self.answers.items():
            if answer.failed:
                errors[label] = _quote(answer.text) or "error result"
        cancelled = [] if not self.decided else list(self.unfinished)
        if not self.decided:
            errors.update(self.unfinished)
        return {
            "strategy": self.strategy,
            "contacted": len(self.contacted),
            "successful": sum(not a.failed for a in self.answers.values()),
            "failed": len(errors),
            "latencies_ms": {
                label: self.answers[label].latency_ms if label in self.answers else None
                for label in self.labels
            },
            "errors": {label: errors[label] for label in self.labels if label in errors},
            "cancelled": cancelled,
            **extra,
        }

    def failure(self, label: str) -> str | None:
        """Why `label` gave no successful answer (None: it did, or was cancelled)."""
        if label in self.missing:
            return self.missing[label]
        if label in self.answers:
            answer = self.answers[label]
            return (_quote(answer.text) or "error result") if answer.failed else None
        return None if self.decided else self.unfinished.get(label)


class FanoutTool(LocalTool):
    """A `[[fanout]]` tool over the targets available when the catalog was built.

    Its result's `_meta["mcp-agg/fanout"]`: `strategy`; `contacted` (targets called),
    `successful` (non-error results) and `failed` (targets with no successful result,
    including those not called, and those cut off by `timeout`) as counts;
    `latencies_ms` (every target: milliseconds, or null when its call did not finish
    or was never made); `errors` (target: reason, for each failed one); `cancelled`
    (targets no longer needed once the strategy had its answer); `winner`
    (first-success) or `agreed` and `votes` (majority-vote).
    """

    _config: FanoutConfig = PrivateAttr()
    _targets: dict[str, CallTarget] = PrivateAttr()
    _labels: tuple[str, ...] = PrivateAttr()
    _missing: dict[str, str] = PrivateAttr()
    _visible: Callable[[str], bool] | None = PrivateAttr(default=None)

    @classmethod
    def create(
        cls,
        config: FanoutConfig,
        targets: Sequence[CallTarget],
        *,
        labels: Sequence[str] | None = None,
        missing: Mapping[str, str] | None = None,
        parameters: dict[str, Any] | None = None,
        read_only: bool = False,
        visible: Callable[[str], bool] | None = None,
    ) -> FanoutTool:
        """A fan-out over `targets` (each labelled by its `name`); `missing` are the
        configured targets not available now, with the reason; `labels` orders them all
        (config order). `visible` tells whether the current caller may see an exposed
        tool name: a target the caller's roles hide is not called."""
        names = [target.name for target in targets]
        tool = cls(
            name=config.name,
            description=config.description or _describe(config, names),
            parameters=parameters or {"type": "object"},
            annotations=mcp_types.ToolAnnotations(read_only_hint=read_only),
        )
        tool._config = config
        tool._targets = dict(zip(names, targets, strict=True))
        tool._missing = dict(missing or {})
        tool._labels = tuple(labels or (*names, *tool._missing))
        tool._visible = visible
        return tool

    @property
    def server(self) -> str:
        return "fanout"

    @property
    def config(self) -> FanoutConfig:
        return self._config

    @property
    def targets(self) -> tuple[str, ...]:
        """Every configured target's label (config order), available or not."""
        return self._labels

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        strategy = self._config.strategy
        state = _Round(strategy, self._labels, dict(self._missing))
        targets = self._targets
        if self._visible is not None:
            # Granting the fan-out does not grant its targets: the least privilege holds.
            hidden = {label for label, t in targets.items() if not self._visible(_exposed(t))}
            for label in hidden:
                state.missing[label] = "not allowed for this caller"
            targets = {label: t for label, t in targets.items() if label not in hidden}
        with anyio.move_on_after(self._config.timeout):
            async with anyio.create_task_group() as tg:
                for label, target in targets.items():
                    tg.start_soon(
                        _settle,
                        state,
                        label,
                        target,
                        arguments,
                        tg.cancel_scope,
                        name=f"fanout {self.name} -> {label}",
                    )
        # Unfinished: cut off by the timeout, or (once decided) no longer needed.
        reason = f"no answer within the fan-out's timeout ({self._config.timeout:g}s); cancelled"
        state.unfinished = {label: reason for label in targets if label not in state.answers}
        return hop_wire(_RESULTS[strategy](state))


def _exposed(target: CallTarget) -> str:
    """The exposed tool name a target calls (what the caller's roles are checked against)."""
    return target.tool.name if isinstance(target, _ReplicaTarget) else target.name


async def _settle(
    state: _Round,
    label: str,
    target: CallTarget,
    arguments: dict[str, Any],
    scope: anyio.CancelScope,
) -> None:
    """Call one target; once the strategy has its answer, the others are cancelled."""
    state.answers[label] = await _call(label, target, arguments)
    if _ENOUGH[state.strategy](state, label):
        state.decided = True
        scope.cancel()


async def _call(label: str, target: CallTarget, arguments: dict[str, Any]) -> _Answer:
    """One target's call, timed; a failure of any kind is that target's error result."""
    started = anyio.current_time()
    try:
        wire = await target.relay(dict(arguments))
    except Exception as exc:  # a backend's protocol error (invalid params), or a bug
        logger.warning("fan-out target %s: %s", label, exc)
        wire = error_result(redact(f"{label}: {exc}"))
    return _Answer(wire, round((anyio.current_time() - started) * 1000, 3))


# ---------------------------------------------------------------------------- strategies


def _first_success_enough(state: _Round, label: str) -> bool:
    return not state.answers[label].failed


def _all_wait_enough(state: _Round, label: str) -> bool:
    return False


def _majority_enough(state: _Round, label: str) -> bool:
    if state.answers[label].failed:
        return False
    votes = _votes(state)
    return bool(votes) and _is_majority(len(votes[0][1]), state)


_ENOUGH: dict[str, Callable[[_Round, str], bool]] = {
    "first-success": _first_success_enough,
    "all-wait": _all_wait_enough,
    "majority-vote": _majority_enough,
}


def _first_success(state: _Round) -> dict[str, Any]:
    for label, answer in state.answers.items():  # in the order they finished
        if not answer.failed:
            meta = {**(answer.wire.get("_meta") or {}), META_KEY: state.meta(winner=label)}
            return {**answer.wire, "_meta": meta}
    return {
        "content": [{"type": "text", "text": "no target succeeded"}, *_sections(state)],
        "isError": True,
        "_meta": {META_KEY: state.meta(winner=None)},
    }


def _all_wait(state: _Round) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label in state.labels:
        answer = state.answers.get(label)
        if answer is None:
            reason = state.failure(label) or "did not finish"
            results[label] = {"isError": True, "structuredContent": None, "text": reason}
        else:
            results[label] = {
                "isError": answer.failed,
                "structuredContent": answer.wire.get("structuredContent"),
                "text": answer.text,
            }
    meta = state.meta()
    return {
        "content": _sections(state),
        "structuredContent": {"results": results},
        "isError": meta["successful"] == 0,
        "_meta": {META_KEY: meta},
    }


def _majority_vote(state: _Round) -> dict[str, Any]:
    votes = _votes(state)
    contacted = len(state.contacted)
    tally = [{"count": len(labels), "targets": labels} for _, labels in votes]
    if votes and _is_majority(len(votes[0][1]), state):
        labels = votes[0][1]
        winner = state.answers[labels[0]]
        meta = state.meta(agreed=len(labels), votes=tally)
        note = f"[majority] {len(labels)} of {contacted} targets agreed: {', '.join(labels)}"
        return {
            **winner.wire,
            "content": [*winner.wire.get("content", []), {"type": "text", "text": note}],
            "_meta": {**(winner.wire.get("_meta") or {}), META_KEY: meta},
        }
    needed = contacted // 2 + 1
    lines = [f"no majority: {needed} of the {contacted} targets contacted had to agree"]
    for key, labels in votes:
        lines.append(f"- {len(labels)} answered {_quote(key[1])}: {', '.join(labels)}")
    for label in state.labels:
        reason = state.failure(label)
        if reason is not None:
            lines.append(f"- {label} failed: {reason}")
    return {
        "content": [{"type": "text", "text": "\n".join(lines)}],
        "isError": True,
        "_meta": {META_KEY: state.meta(agreed=len(votes[0][1]) if votes else 0, votes=tally)},
    }


_RESULTS: dict[str, Callable[[_Round], dict[str, Any]]] = {
    "first-success": _first_success,
    "all-wait": _all_wait,
    "majority-vote": _majority_vote,
}


def _votes(state: _Round) -> list[tuple[tuple[str, str], list[str]]]:
    """The answers given (error results do not vote), most agreed first, each with its
    targets in config order. Answers are compared by structured content when every
    answer has one, else by their text."""
    answered = [
        (label, state.answers[label])
        for label in state.labels
        if label in state.answers and not state.answers[label].failed
    ]
    structured = all(a.wire.get("structuredContent") is not None for _, a in answered)
    groups: dict[tuple[str, str], list[str]] = {}
    for label, answer in answered:
        key = (
            ("structured", json.dumps(answer.wire["structuredContent"], sort_keys=True))
            if structured
            else ("text", answer.text)
        )
        groups.setdefault(key, []).append(label)
    return sorted(groups.items(), key=lambda item: -len(item[1]))


def _is_majority(count: int, state: _Round) -> bool:
    """More than half of the targets contacted (a failed one counts against)."""
    return count * 2 > len(state.contacted)


def _sections(state: _Round) -> list[dict[str, Any]]:
    """Every target's result in config order, each after a `[target] ...` header."""
    blocks: list[dict[str, Any]] = []
    for label in state.labels:
        answer = state.answers.get(label)
        if answer is None:
            reason = state.failure(label)
            header = f"[{label}] error: {reason}" if reason else f"[{label}] cancelled"
            blocks.append({"type": "text", "text": header})
            continue
        header = f"[{label}] error" if answer.failed else f"[{label}] ok"
        blocks.append({"type": "text", "text": header})
        blocks.extend(answer.wire.get("content", []))
    return blocks


def _text(wire: Mapping[str, Any]) -> str:
    """A result's text blocks, joined."""
    return "\n".join(
        block["text"]
        for block in wire.get("content", ())
        if isinstance(block, dict) and block.get("type") == "text"
    )


def _quote(text: str) -> str:
    return text if len(text) <= _QUOTE else text[: _QUOTE - 1] + "…"


def _describe(config: FanoutConfig, targets: Sequence[str]) -> str:
    over = (
        f"tool {config.tool!r} on every replica of {config.group!r}"
        if config.group is not None
        else ", ".join(config.targets or targets)
    )
    return f"Calls {over} at once ({config.strategy})."


# ---------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class _ReplicaTarget:
    """One replica of a group as a fan-out target: the call runs on that replica only."""

    group: ReplicaGroup
    replica: Upstream
    tool: ForwardingTool

    @property
    def name(self) -> str:
        return self.replica.id

    @property
    def server(self) -> str:
        return self.group.name

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            raw = await self.group.call_tool_on(
                self.replica, self.tool.original, arguments, safe=self.tool.safe
            )
        except (UpstreamError, RefusedError) as exc:
            logger.warning("%s on %s: %s", self.tool.name, self.replica.id, exc)
            return error_result(redact(str(exc)))
        return hop_wire(raw)


def fanout_tools(gateway: FanoutHost) -> LocalTools:
    """The source of the `[[fanout]]` tools for `Gateway.local_tools`."""
    return _FanoutTools(gateway)


class _FanoutTools:
    """Makes the fan-out tools for each catalog built.

    A fan-out is offered with the targets available in that catalog; one with none is
    left out. Its problems (targets missing, differing input schemas, left out) are
    logged when they change, so startup logs them all and a rebuild only what is new.
    """

    def __init__(self, gateway: FanoutHost) -> None:
        self._gateway = gateway
        self._reported: dict[str, set[str]] = {}

    def __call__(self, catalog: Catalog) -> dict[str, FanoutTool]:
        tools: dict[str, FanoutTool] = {}
        for config in self._gateway.config.fanout:
            tool = self._build(config, catalog)
            if tool is not None:
                tools[config.name] = tool
        return tools

    def _build(self, config: FanoutConfig, catalog: Catalog) -> FanoutTool | None:
        problems: list[tuple[int, str]] = []
        if config.group is not None:
            targets, labels, missing, definitions = self._replicas(config, catalog, problems)
        else:
            targets, labels, missing, definitions = self._named(config, catalog, problems)
        if not targets:
            problems.append((logging.ERROR, "no target available: the tool is left out"))
        elif any(d.parameters != definitions[0].parameters for d in definitions):
            problems.append(
                (
                    logging.WARNING,
                    f"the targets' input schemas differ; the tool takes {definitions[0].name!r}'s",
                )
            )
        self._report(config.name, problems)
        if not targets:
            return None
        read_only = not missing and all(
            d.annotations is not None and d.annotations.read_only_hint is True for d in definitions
        )
        return FanoutTool.create(
            config,
            targets,
            labels=labels,
            missing=missing,
            parameters=definitions[0].parameters,
            read_only=read_only,
            visible=self._gateway.visibility.allows,
        )

    def _named(
        self, config: FanoutConfig, catalog: Catalog, problems: list[tuple[int, str]]
    ) -> tuple[list[CallTarget], list[str], dict[str, str], list[ForwardingTool]]:
        labels = list(config.targets or ())
        found = [catalog.tools[name] for name in labels if name in catalog.tools]
        missing: dict[str, str] = {}
        for name in labels:
            if name not in catalog.tools:
                down = self._down_server(name)
                if down is None:
                    missing[name] = "not in the catalog: no server offers a tool of that name"
                    problems.append((logging.ERROR, f"unknown target {name!r}: {missing[name]}"))
                else:
                    missing[name] = f"not in the catalog: server {down!r} is not available"
                    problems.append((logging.WARNING, f"target {name!r}: {missing[name]}"))
        return list(found), labels, missing, found

    def _replicas(
        self, config: FanoutConfig, catalog: Catalog, problems: list[tuple[int, str]]
    ) -> tuple[list[CallTarget], list[str], dict[str, str], list[ForwardingTool]]:
        group = self._gateway.groups.get(config.group or "")
        tool = next(
            (t for t in catalog.tools.values() if t.group is group and t.original == config.tool),
            None,
        )
        if group is None or tool is None:
            problems.append(
                (
                    logging.ERROR,
                    f"server {config.group!r} offers no tool {config.tool!r} now (its replicas "
                    "are down, or the tool is filtered out or misspelt)",
                )
            )
            return [], [], {}, []
        targets: list[CallTarget] = [_ReplicaTarget(group, r, tool) for r in group.replicas]
        return targets, [r.id for r in group.replicas], {}, [tool]

    def _down_server(self, name: str) -> str | None:
        """The server a missing tool name would belong to, when that server has never
        listed its tools (down since startup); None: no server would own it (a typo)."""
        separator = self._gateway.config.gateway.separator
        for group in self._gateway.groups.values():
            owns = group.prefix == "" or name.startswith(group.prefix + separator)
            if owns and group.listing is None and group.server.failover_for is None:
                return group.name
        return None

    def _report(self, name: str, problems: list[tuple[int, str]]) -> None:
        seen = self._reported.get(name, set())
        current = {message for _, message in problems}
        for level, message in problems:
            if message not in seen:
                logger.log(level, "fan-out %r: %s", name, message)
        for message in sorted(seen - current):
            logger.info("fan-out %r: resolved: %s", name, message)
        self._reported[name] = current
