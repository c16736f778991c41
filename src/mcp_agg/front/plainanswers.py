"""A handshake-era POST answered with plain JSON unless something has to stream.

The MCP SDK's streamable HTTP transport answers every request POST either as an SSE
stream (its default, which FastMCP keeps) or, in its JSON-response mode, as one JSON
body, for the whole server. Streaming every answer costs a gateway on every call: the
SSE response runs four tasks per POST (sse-starlette's sender, pinger, disconnect
listener and the SDK's writer), frames the message, and the client parses the frames;
yet most calls (`tools/call`, `resources/read`, `prompts/get`, the lists) send nothing
before their result. The JSON mode, on the other hand, drops what a backend sends during
a call (progress, log messages) and refuses its requests (sampling, elicitation).

The spec lets the server choose per request when the client accepts both. A client
that ranks `text/event-stream` first in its `Accept` (by quality, then by order; the
MCP SDKs list `application/json` first) is streamed to, as before. Otherwise, as the
SDK's own modern-era entry does (`_streamable_http_modern.py`), `DeferredStreamTransport`
defers the choice: it waits for the first message for the request; the result itself
goes back as `application/json`; anything else (a notification or a request tied to
the call), or `_DEFER_SECONDS` of silence (so a proxy's idle timeout sees the stream's
pings), commits to SSE exactly as before: the priming event (minted before the request
is dispatched, as the SDK does, so replay order is wire order), that first message,
then the rest. A request whose stream the server ends early (`close_sse_stream`, SEP-1699
polling) while still deferred gets its priming event, so the client resumes as before.
A client that leaves while its answer is deferred is noticed (`mcp_agg.front.exchanges`
then cancels its call), as it is on a stream. A response that arrives while its answer is
undecided is kept out of the SSE event store (a JSON answer is never replayed: its client
got no event id); if the answer becomes a stream, it is stored then, after what came
before it.

`_handle_post_request` is the SDK's (mcp 2.3.0), with the SSE branch replaced: the SDK
has no seam between validating a POST and answering it. `PlainAnswers` is FastMCP's
session manager making these transports (`plain_answers` puts it in place, as
`mcp_agg.front.sealedsessions` does its own, which extends it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from functools import partial
from http import HTTPStatus
from typing import Any
from uuid import uuid4

import anyio
import pydantic_core
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from fastmcp.server.http import FastMCPStreamableHTTPSessionManager
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import (
    CONTENT_TYPE_SSE,
    MCP_SESSION_ID_HEADER,
    REQUEST_STREAM_BUFFER_SIZE,
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    SSEEvent,
    StreamableHTTPServerTransport,
    StreamId,
)
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.message import SessionMessage
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    PARSE_ERROR,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from mcp_agg.front.bodylimit import session_manager

__all__ = ["DeferredStreamTransport", "PlainAnswers", "plain_answers", "prefers_stream"]

logger = logging.getLogger(__name__)

#: How long an answer may stay undecided before it becomes a stream (and pings): the
#: SDK's modern-era entry waits as long (`_SSE_PING_INTERVAL`), sse-starlette pings as
#: often.
_DEFER_SECONDS = 15.0


class _UndecidedUnstored(EventStore):
    """A transport's event store that keeps no response to a request whose answer is
    still undecided: sent as JSON, it is never replayed (its client got no event id);
    if the answer becomes a stream, the transport stores it then (`_stored`)."""

    def __init__(self, store: EventStore, undecided: set[str]) -> None:
        self._store = store
        self._undecided = undecided

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        if stream_id in self._undecided and isinstance(message, JSONRPCResponse | JSONRPCError):
            return ""  # no event id: framed without one
        return await self._store.store_event(stream_id, message)

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        return await self._store.replay_events_after(last_event_id, send_callback)


class DeferredStreamTransport(StreamableHTTPServerTransport):
    """The SDK's transport, answering a request as JSON unless it has to stream
    (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The requests whose answer is not decided yet (JSON or a stream).
        self._undecided: set[str] = set()
        if self._event_store is not None:
            self._event_store = _UndecidedUnstored(self._event_store, self._undecided)

    async def _handle_post_request(
        self, scope: Scope, request: Request, receive: Receive, send: Send
    ) -> None:
        if self.is_json_response_enabled:
            await super()._handle_post_request(scope, request, receive, send)
            return
        writer = self._read_stream_writer
        if writer is None:  # connect() is entered before any request is served
            raise RuntimeError("the transport is not connected")
        try:
            # From here to the request's dispatch: the SDK's checks, in its order.
            if not await self._validate_accept_header(request, scope, send):
                return
            if not self._check_content_type(request):
                response = self._create_error_response(
                    "Unsupported Media Type: Content-Type must be application/json",
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                )
                await response(scope, receive, send)
                return
            body = await request.body()
            try:
                raw_message = pydantic_core.from_json(body)
            except ValueError as e:
                response = self._create_error_response(
                    f"Parse error: {e}", HTTPStatus.BAD_REQUEST, PARSE_ERROR
                )
                await response(scope, receive, send)
                return
            try:
                message = jsonrpc_message_adapter.validate_python(raw_message, by_name=False)
            except ValidationError as e:
                response = self._create_error_response(
                    f"Validation error: {e}", HTTPStatus.BAD_REQUEST, INVALID_PARAMS
                )
                await response(scope, receive, send)
                return
            initializing = isinstance(message, JSONRPCRequest) and message.method == "initialize"
            if initializing:
                requested = self._get_session_id(request)
                if self.mcp_session_id and requested and requested != self.mcp_session_id:
                    response = self._create_error_response(
                        "Not Found: Invalid or expired session ID", HTTPStatus.NOT_FOUND
                    )
                    await response(scope, receive, send)
                    return
            elif not await self._validate_request_headers(request, send):
                return
            if not isinstance(message, JSONRPCRequest):
                await self._create_json_response(None, HTTPStatus.ACCEPTED)(scope, receive, send)
                metadata = self._message_metadata(request)
                await writer.send(SessionMessage(message, metadata=metadata))
                return
            protocol_version = (
                str(message.params.get("protocolVersion", DEFAULT_NEGOTIATED_VERSION))
                if initializing and message.params
                else request.headers.get(MCP_PROTOCOL_VERSION_HEADER, DEFAULT_NEGOTIATED_VERSION)
            )
            await self._answer(scope, request, receive, send, message, protocol_version)
        except Exception as err:
            logger.exception("Error handling POST request")
            response = self._create_error_response(
                "Error handling POST request", HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL_ERROR
            )
            await response(scope, receive, send)
            await writer.send(Exception(err))

    async def _answer(
        self,
        scope: Scope,
        request: Request,
        receive: Receive,
        send: Send,
        message: JSONRPCRequest,
        protocol_version: str,
    ) -> None:
        """Dispatch `message`; answer as JSON if its result comes first, else stream."""
        assert self._read_stream_writer is not None
        request_id = str(message.id)
        # Minted before dispatch, as the SDK does: the priming row precedes anything
        # stored for this stream, so a resumed stream replays in wire order.
        priming = await self._mint_priming_event(request_id, protocol_version)
        events, reader = anyio.create_memory_object_stream[EventMessage](REQUEST_STREAM_BUFFER_SIZE)
        self._request_streams[request_id] = (events, reader)
        dispatched = self._create_session_message(message, request, request_id, protocol_version)
        if prefers_stream(request.headers.get("accept", "")):
            await self._read_stream_writer.send(dispatched)
            await self._stream(scope, receive, send, request_id, reader, priming, [])
            return
        self._undecided.add(request_id)
        try:
            await self._read_stream_writer.send(dispatched)
            first, ended, left = await _first_event(reader, receive)
        finally:
            # From here on the SDK's router stores this request's response as any other.
            self._undecided.discard(request_id)
        if left:
            # The client left: nobody to answer; the exchange cancels the call.
            await self._clean_up_memory_streams(request_id)
            return
        if first is not None and isinstance(first.message, JSONRPCResponse | JSONRPCError):
            await self._clean_up_memory_streams(request_id)
            await self._create_json_response(first.message)(scope, receive, send)
            return
        if ended and (self._terminated or priming is None):
            await self._clean_up_memory_streams(request_id)
            response = self._create_error_response(
                "Session terminated before the request completed",
                HTTPStatus.INTERNAL_SERVER_ERROR,
                INTERNAL_ERROR,
            )
            await response(scope, receive, send)
            return
        # Something to stream (or a long silence, or the stream ended early for the
        # client to resume it): the SDK's SSE answer, with what came while undecided
        # after the priming event. No await before it is taken: the router stores
        # whatever comes next itself.
        pending = [] if first is None else [first]
        while True:
            try:
                pending.append(reader.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        pending = [await self._stored(request_id, event) for event in pending]
        await self._stream(scope, receive, send, request_id, reader, priming, pending)

    async def _stored(self, request_id: str, event: EventMessage) -> EventMessage:
        """`event`, stored if the router left it out (a response while undecided)."""
        if event.event_id or self._event_store is None:
            return event
        event_id = await self._event_store.store_event(request_id, event.message)
        return EventMessage(event.message, event_id)

    async def _stream(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        reader: MemoryObjectReceiveStream[EventMessage],
        priming: SSEEvent | None,
        pending: list[EventMessage],
    ) -> None:
        sse_writer, sse_reader = anyio.create_memory_object_stream[SSEEvent](0)
        self._sse_stream_writers[request_id] = sse_writer
        headers = {
            "Cache-Control": "no-cache, no-transform",
            "Connection": "keep-alive",
            "Content-Type": CONTENT_TYPE_SSE,
            **({MCP_SESSION_ID_HEADER: self.mcp_session_id} if self.mcp_session_id else {}),
        }
        response = EventSourceResponse(
            content=sse_reader,
            data_sender_callable=partial(
                self._send_events, request_id, sse_writer, reader, priming, pending
            ),
            headers=headers,
        )
        try:
            await response(scope, receive, send)
        except Exception:
            logger.exception("SSE response error")
            await sse_writer.aclose()
            await self._clean_up_memory_streams(request_id)
        finally:
            await sse_reader.aclose()

    async def _send_events(
        self,
        request_id: str,
        sse_writer: MemoryObjectSendStream[SSEEvent],
        reader: MemoryObjectReceiveStream[EventMessage],
        priming: SSEEvent | None,
        pending: list[EventMessage],
    ) -> None:
        """The priming event and what came while undecided, then the SDK's writer for
        the rest (unless the response was among them)."""
        try:
            if priming is not None:
                await sse_writer.send(priming)
            for event in pending:
                await sse_writer.send(self._create_event_data(event))
                if isinstance(event.message, JSONRPCResponse | JSONRPCError):
                    await sse_writer.aclose()
                    self._sse_stream_writers.pop(request_id, None)
                    await self._clean_up_memory_streams(request_id)
                    return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            logger.debug("SSE stream closed before its first events")
        await self._run_sse_writer(request_id, sse_writer, reader, None)


def prefers_stream(accept: str) -> bool:
    """Whether an `Accept` header ranks `text/event-stream` above `application/json`:
    by quality, then by order (a client listing the stream first wants one)."""
    ranks: dict[str, tuple[float, int]] = {}
    for position, item in enumerate(accept.split(",")):
        media, *options = (part.strip() for part in item.split(";"))
        quality = 1.0
        for option in options:
            name, _, value = option.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranks.setdefault(media.lower(), (-quality, position))
    stream, json = ranks.get(CONTENT_TYPE_SSE), ranks.get("application/json")
    return stream is not None and (json is None or stream < json)


async def _first_event(
    reader: MemoryObjectReceiveStream[EventMessage], receive: Receive
) -> tuple[EventMessage | None, bool, bool]:
    """The first message for a request within `_DEFER_SECONDS`: (the message or None,
    whether its stream ended first, whether the client left first)."""
    first: EventMessage | None = None
    ended = left = False
    with anyio.move_on_after(_DEFER_SECONDS):
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                nonlocal left
                while (await receive())["type"] != "http.disconnect":
                    pass
                left = True
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                first = await reader.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                ended = True
            tg.cancel_scope.cancel()
    return first, ended, left


class PlainAnswers(FastMCPStreamableHTTPSessionManager):
    """FastMCP's session manager, its sessions served by `DeferredStreamTransport`."""

    def _admit_session(
        self, requestor: AuthorizationContext | None
    ) -> StreamableHTTPServerTransport | None:
        # The SDK's, with the transport class replaced.
        return self._register(uuid4().hex, requestor)

    def _register(
        self, session_id: str, requestor: AuthorizationContext | None
    ) -> StreamableHTTPServerTransport | None:
        """A transport for `session_id`, tracked as the SDK tracks its own; None at the
        session limit (`max_sessions`), as the SDK's admission."""
        if self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
            return None
        transport = DeferredStreamTransport(
            mcp_session_id=session_id,
            is_json_response_enabled=self.json_response,
            event_store=self.event_store,
            security_settings=self.security_settings,
            retry_interval=self.retry_interval,
            idle_timeout=self.session_idle_timeout,
        )
        if requestor is not None:
            self._session_owners[session_id] = requestor
        self._server_instances[session_id] = transport
        return transport


def plain_answers(app: Starlette) -> None:
    """Make the session manager of FastMCP's `app` a `PlainAnswers`.

    FastMCP builds its manager when the app's lifespan starts, with no seam to build
    another: the one it made gets this subclass's behaviour right after (it adds
    methods only), before uvicorn accepts a connection.
    """
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(instance: Any) -> AsyncIterator[Any]:
        async with started(instance) as state:
            manager = session_manager(app)
            if not isinstance(manager, FastMCPStreamableHTTPSessionManager):
                raise RuntimeError("FastMCP's session manager was not found")
            if not isinstance(manager, PlainAnswers):
                manager.__class__ = PlainAnswers
            yield state

    app.router.lifespan_context = lifespan
