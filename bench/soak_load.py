"""The soak's calls: a mix of idempotent and non-idempotent tools on every server, from
client sessions of both fronts, each at a bounded rate; every call recorded.

A call succeeds when the gateway answers with a result that is not an error and is the
answer to that call (the right text, the right sum, a replica of the right server).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mcp_types
from fastmcp import Client

__all__ = ["MIX", "CallRecord", "Load", "ToolKind", "expected_names"]

#: Seconds a client waits for one call: the gateway's deadline (15 s) first, then this.
CALL_TIMEOUT = 25.0


@dataclass(frozen=True, slots=True)
class ToolKind:
    """A tool of the mix: its server, its backend name, whether a retry is safe and why."""

    server: str
    tool: str
    idempotent: bool
    why: str
    weight: int

    @property
    def exposed(self) -> str:
        return f"{self.server}_{self.tool}"


MIX = (
    ToolKind("local", "read", True, "readOnlyHint", 3),
    ToolKind("local", "echo", True, "idempotent_tools", 2),
    ToolKind("local", "write", False, "no hints", 3),
    ToolKind("web", "read", True, "readOnlyHint", 2),
    ToolKind("web", "echo", True, "idempotent_tools", 1),
    ToolKind("web", "write", False, "no hints", 2),
    ToolKind("everything", "echo", True, "readOnlyHint", 2),
    ToolKind("everything", "get-sum", False, "non_idempotent_tools", 1),
)


def expected_names() -> set[str]:
    return {kind.exposed for kind in MIX}


@dataclass(slots=True)
class CallRecord:
    """One call: where it went, when (seconds since the soak began), how it ended."""

    front: str
    kind: ToolKind
    start: float
    end: float = 0.0
    ok: bool = False
    error: str | None = None
    #: The replica that answered (the faulty backend says who it is).
    replica: str | None = None


def _text(result: mcp_types.CallToolResult) -> str:
    return "".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


@dataclass(frozen=True, slots=True)
class _Call:
    arguments: dict[str, Any]
    #: The answer's text → an error (None: the right answer).
    check: Callable[[str], str | None]


def _call(kind: ToolKind, key: str, rng: random.Random, replicas: set[str]) -> _Call:
    """Arguments for one call of `kind`, and how to tell its answer is right."""

    def is_replica(text: str) -> str | None:
        return None if text in replicas else f"answered by {text[:60]!r}, not a replica"

    def equals(expected: str) -> Callable[[str], str | None]:
        return lambda text: None if text == expected else f"wrong answer {text[:60]!r}"

    if kind.server == "everything":
        if kind.tool == "echo":
            return _Call({"message": key}, equals(f"Echo: {key}"))
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        return _Call({"a": a, "b": b}, equals(f"The sum of {a} and {b} is {a + b}."))
    if kind.tool == "echo":
        return _Call({"text": key}, equals(key))
    return _Call({"key": key}, is_replica)


@dataclass(slots=True)
class Load:
    """Workers calling the mix until `stop_at`, each at about `rate` calls per second."""

    started: float
    stop_at: float
    rate: float
    #: front → server → the tags of its replicas (what a faulty backend answers).
    replicas: dict[str, dict[str, set[str]]]
    seed: int
    records: list[CallRecord] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.started

    async def worker(self, client: Client[Any], front: str, name: str) -> None:
        """Call until `stop_at`; never more than `rate` calls per second on average."""
        rng = random.Random(f"{self.seed}-{name}")
        weights = [kind.weight for kind in MIX]
        due = self.now() + rng.uniform(0, 1 / self.rate)
        number = 0
        while (now := self.now()) < self.stop_at:
            if due > now:
                await asyncio.sleep(min(due - now, self.stop_at - now))
                continue
            kind = rng.choices(MIX, weights)[0]
            number += 1
            await self._one(client, front, kind, f"{name}-{number}", rng)
            # Jittered spacing; a slow call is not made up for by a burst.
            due = max(due + rng.uniform(0.5, 1.5) / self.rate, self.now())

    async def _one(
        self, client: Client[Any], front: str, kind: ToolKind, key: str, rng: random.Random
    ) -> None:
        call = _call(kind, key, rng, self.replicas[front][kind.server])
        record = CallRecord(front, kind, self.now())
        self.records.append(record)
        try:
            result = await client.call_tool_mcp(kind.exposed, call.arguments, timeout=CALL_TIMEOUT)
        except Exception as exc:  # whatever the client raises is this call's failure
            record.error = f"{type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            record.error = "cancelled: the soak was stopped"
            raise
        else:
            text = _text(result)
            if result.is_error:
                record.error = f"tool error: {text}"
            else:
                record.error = call.check(text)
                record.replica = text if kind.tool in {"read", "write"} else None
            record.ok = record.error is None
        finally:
            record.end = self.now()
