"""The bridge between a modern-era client and a backend that asks for input mid-call.

A client of MCP 2026-07-28 takes no server-to-client requests: a server that needs its
input answers the call with an input-required result (SEP-2322) and the client retries
the same request with its answers. A handshake-era backend instead sends
`sampling/createMessage`, `elicitation/create` or `roots/list` while the call runs, and
waits for the answer.

The bridge joins the two. A call of a modern-era client that may need its input runs as
a `ParkedCall` in the gateway's task group, not in the client's request. The request
waits for the call's next event: its result, which is the answer; or a backend's
request, which is answered to the client as an input-required result carrying that
request (and every other one pending at that moment) and a `requestState` that names
the parked call. The backend's call stays in flight. The client's retry brings the
answers; they go to the backend's waiting requests, and the retry waits for the next
event in turn.

The state is sealed and verified by the SDK's request-state boundary, which the
gateway's FastMCP server installs (AES-GCM, bound to the method, the tool name and
arguments, and the caller): a tampered state never reaches the gateway's handlers, and
one naming a call no longer parked gets the boundary's own error. A client that does
not come back within `timeout` has its call cancelled (the backend's request too) and
the parked call freed.

A parked call lives in the gateway process that started it: a fleet of gateways needs
the rounds of one call to reach the same process (affinity).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import mcp_types
from mcp.shared.exceptions import MCPError
from mcp_types.methods import is_input_required
from pydantic import ValidationError

from mcp_agg.core.caller import Caller

__all__ = [
    "PARKED_STATE",
    "Bridge",
    "ParkedCall",
    "backend_round",
    "invalid_state",
    "passed_through",
]

logger = logging.getLogger(__name__)

#: The plaintext of a gateway `requestState` that names a parked call.
PARKED_STATE = "mcp-agg/parked:"
#: The plaintext of a gateway `requestState` that carries a backend's own state (a
#: modern-era backend's input-required round, passed through).
BACKEND_STATE = "mcp-agg/backend:"


def invalid_state() -> MCPError:
    """The SDK's answer to a `requestState` it cannot honour (request_state.py)."""
    return MCPError(
        code=mcp_types.INVALID_PARAMS,
        message="Invalid or expired requestState",
        data={"reason": "invalid_request_state"},
    )


@dataclass(eq=False, slots=True)
class _Ask:
    """One backend request waiting for the client's answer."""

    request: mcp_types.ServerRequest
    result_type: type[Any]
    what: str
    answered: anyio.Event = field(default_factory=anyio.Event)
    answer: Any = None
    error: mcp_types.ErrorData | None = None

    def settle(self, response: Any) -> None:
        try:
            self.answer = self.result_type.model_validate(response, by_name=False)
        except ValidationError as exc:
            self.error = mcp_types.ErrorData(
                code=mcp_types.INVALID_PARAMS,
                message=f"{self.what}: the client's answer is not valid ({exc.error_count()})",
            )
        self.answered.set()

    def refuse(self, message: str) -> None:
        self.error = mcp_types.ErrorData(code=mcp_types.INVALID_REQUEST, message=message)
        self.answered.set()


@dataclass(eq=False, slots=True)
class _Outcome:
    value: Any = None
    error: BaseException | None = None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


@dataclass(eq=False, slots=True)
class ParkedCall:
    """A modern-era client's call, running while its rounds come and go."""

    id: str
    caller: Caller
    #: Backend requests not yet sent to the client, by the key the client answers to.
    pending: dict[str, _Ask] = field(default_factory=dict)
    #: Backend requests sent to the client in the last round, awaiting its answers.
    asked: dict[str, _Ask] = field(default_factory=dict)
    outcome: _Outcome | None = None
    #: Whether a client request is waiting for this call's next event.
    waiting: bool = False
    #: When the client must be back by (anyio clock), while no request waits.
    deadline: float = 0.0
    gone: bool = False
    taken: anyio.Event = field(default_factory=anyio.Event)
    #: Cancels the call (set once its task runs).
    scope: anyio.CancelScope | None = None
    _changed: anyio.Event = field(default_factory=anyio.Event)
    _keys: int = 0

    def poke(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    async def ask(self, request: mcp_types.ServerRequest, result_type: type[Any], what: str) -> Any:
        """A backend's request, answered by the client in its next round (`Caller.request`)."""
        self._keys += 1
        key = f"{request.method}-{self._keys}"
        ask = _Ask(request, result_type, what)
        self.pending[key] = ask
        self.poke()
        try:
            await ask.answered.wait()
        finally:
            self.pending.pop(key, None)
            self.asked.pop(key, None)
        if ask.error is not None:
            raise MCPError.from_error_data(ask.error)
        return ask.answer


class Bridge:
    """The calls of modern-era clients parked while they wait for input (module docstring)."""

    def __init__(
        self,
        task_group: Callable[[], anyio.abc.TaskGroup | None],
        timeout: Callable[[], float],
    ) -> None:
        self._task_group = task_group
        self._timeout = timeout
        self._parks: dict[str, ParkedCall] = {}

    @property
    def timeout(self) -> float:
        """How long a client has to come back with its answers (`request_timeout`)."""
        return self._timeout()

    def __len__(self) -> int:
        """Calls parked now."""
        return len(self._parks)

    def wanted(self, caller: Caller) -> bool:
        """Whether a call of `caller` must be able to ask its client mid-call: a client of
        the modern era that can answer sampling, elicitation or roots requests."""
        if caller.handshake or self._task_group() is None:
            return False
        caps = caller.context.session.client_capabilities
        return caps is not None and (
            caps.sampling is not None or caps.elicitation is not None or caps.roots is not None
        )

    async def start(self, caller: Caller, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run `work` for `caller` as a parked call; its result, or its first round."""
        tg = self._task_group()
        if tg is None:
            return await work()
        park = ParkedCall(secrets.token_urlsafe(18), caller)
        caller.park = park
        self._parks[park.id] = park
        park.waiting = True
        tg.start_soon(self._live, park, work)
        return await self._round(park)

    async def resume(self, caller: Caller, state: str, responses: Mapping[str, Any] | None) -> Any:
        """A client's retry: its answers to the parked call's requests; the next event."""
        park = self._parks.get(state.removeprefix(PARKED_STATE))
        if park is None or park.gone or park.waiting or not state.startswith(PARKED_STATE):
            raise invalid_state()
        answers = responses or {}
        for key, ask in list(park.asked.items()):
            if key in answers:
                ask.settle(answers[key])
            else:
                ask.refuse(f"{ask.what}: the client did not answer it")
        park.asked.clear()
        park.waiting = True
        # The rounds share the call's relay: progress and logs go to the request now
        # waiting, and the caller's own state (log level) is the latest round's.
        park.caller.context = caller.context
        return await self._round(park)

    async def _round(self, park: ParkedCall) -> Any:
        """Wait for the parked call's next event: its result, or requests to ask."""
        park.waiting = True
        park.poke()
        try:
            while True:
                if park.outcome is not None:
                    park.taken.set()
                    return park.outcome.unwrap()
                if park.pending:
                    park.asked.update(park.pending)
                    park.pending.clear()
                    return _input_required(park)
                if park.gone:
                    raise invalid_state()
                await park.changed()
        except anyio.get_cancelled_exc_class():
            # The client cancelled its request (or left): the call is cancelled with it,
            # as a call not parked would be.
            if park.scope is not None:
                park.scope.cancel()
            raise
        finally:
            park.waiting = False
            park.deadline = anyio.current_time() + self.timeout
            park.poke()

    async def _live(self, park: ParkedCall, work: Callable[[], Awaitable[Any]]) -> None:
        """The parked call's own task: the work, then its result kept for the client."""
        try:
            async with anyio.create_task_group() as tg:
                park.scope = tg.cancel_scope
                tg.start_soon(self._watch, park, tg.cancel_scope)
                try:
                    park.outcome = _Outcome(value=await work())
                except Exception as exc:
                    park.outcome = _Outcome(error=exc)
                park.poke()
                await park.taken.wait()
                tg.cancel_scope.cancel()
        finally:
            self._parks.pop(park.id, None)
            park.gone = True
            for ask in (*park.pending.values(), *park.asked.values()):
                ask.refuse(f"{ask.what}: the client did not come back")
            park.poke()

    async def _watch(self, park: ParkedCall, scope: anyio.CancelScope) -> None:
        """Cancel the parked call once its client has been away for `timeout`."""
        while True:
            if park.waiting:
                await park.changed()
                continue
            left = park.deadline - anyio.current_time()
            if left <= 0:
                logger.info(
                    "a parked call's client did not come back within %gs: cancelled",
                    self.timeout,
                )
                scope.cancel()
                return
            with anyio.move_on_after(left):
                await park.changed()


def _input_required(park: ParkedCall) -> dict[str, Any]:
    """The round's answer to the client: the backend's requests, and the call's state."""
    requests = {
        key: ask.request.model_dump(by_alias=True, mode="json", exclude_none=True)
        for key, ask in park.asked.items()
    }
    return {
        "resultType": "input_required",
        "inputRequests": requests,
        "requestState": PARKED_STATE + park.id,
    }


def backend_round(params: Mapping[str, Any], state: str | None) -> dict[str, Any]:
    """What a client's retry sends on to a modern-era backend: its answers, and the
    backend's own state from the gateway's (`BACKEND_STATE`)."""
    sent: dict[str, Any] = {}
    if state is not None:
        if not state.startswith(BACKEND_STATE):
            raise invalid_state()
        sent["requestState"] = state.removeprefix(BACKEND_STATE)
    responses = params.get("inputResponses")
    if responses is not None:
        sent["inputResponses"] = responses
    return sent


def passed_through(result: Any) -> Any:
    """A backend's input-required result as the client gets it: as it is, its state
    marked as the backend's (the request-state boundary then seals it)."""
    if not is_input_required(result) or not isinstance(result, Mapping):
        return result
    state = result.get("requestState")
    if not isinstance(state, str):
        return result
    return {**result, "requestState": BACKEND_STATE + state}
