"""JSON-RPC over lines on a pair of byte streams: the stdio front's session wire.

It replaces the MCP SDK's `stdio_server`, which reads stdin with no bound on a line,
drops the lines it cannot read without an answer, and ends the session the moment stdin
closes (cutting off the calls in flight). Here:

- lines are split by a `LineSplitter` bounded by `max_message_bytes`, so a long line is
  refused and discarded as it streams past, never held;
- every line is answered as JSON-RPC 2.0 says when it is not a valid message (`inbound`);
- the requests the client sent and has no answer to yet are counted (`idle`), so the
  front can drain: stdin closing (or stdout breaking) only tells it to (`on_eof`), and
  the session ends when the front says so (`close`), once every answer is written;
- a handshake the gateway answered before the session existed (`earlyinit`) is not
  answered twice: the session's answer is checked against it and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import anyio
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCError, JSONRPCMessage, JSONRPCRequest, JSONRPCResponse, RequestId

from mcp_agg.codec import encode
from mcp_agg.front.earlyinit import EarlyAnswer
from mcp_agg.front.inbound import Inbound, read_line, read_oversized
from mcp_agg.front.lines import LineSplitter

__all__ = ["ByteStreams", "LineWire"]

logger = logging.getLogger(__name__)


class ByteStreams(Protocol):
    """The client's two byte streams (the stdio front's stdin and stdout)."""

    async def read(self) -> bytes:
        """The next bytes the client wrote; `b""` once it closed its end."""
        ...

    async def write(self, data: bytes) -> None:
        """Write all of `data` (OSError when the client stopped reading)."""
        ...


class LineWire:
    """The session's two streams over `pipes` (module docstring).

    `read_client` and `write_client` run beside the server loop, which reads
    `read_stream` and writes `write_stream`. `answered`: the handshake the client
    already has its answer to.
    """

    def __init__(
        self,
        pipes: ByteStreams,
        *,
        limit: int,
        on_eof: Callable[[str], None],
        answered: EarlyAnswer | None = None,
    ) -> None:
        self._pipes = pipes
        self._answered_early = answered
        self._limit = limit
        self._on_eof = on_eof
        self._to_session: MemoryObjectSendStream[SessionMessage | Exception]
        self.read_stream: MemoryObjectReceiveStream[SessionMessage | Exception]
        self._to_session, self.read_stream = anyio.create_memory_object_stream(0)
        self.write_stream: MemoryObjectSendStream[SessionMessage]
        self._from_session: MemoryObjectReceiveStream[SessionMessage]
        self.write_stream, self._from_session = anyio.create_memory_object_stream(0)
        #: Our own answers (to lines that are not valid messages), written between the
        #: session's.
        self._answers, self._answers_out = anyio.create_memory_object_stream[JSONRPCError](16)
        #: The client's requests not answered on the wire yet.
        self._unanswered: set[RequestId] = set()
        self._answered = anyio.Event()
        #: One line at a time: the session's and our own answers are written by two tasks.
        self._writing = anyio.Lock()
        #: The client stopped reading: what is left to write goes nowhere.
        self._gone = False
        #: Set once everything the session wrote has been written (or the client left).
        self.written = anyio.Event()

    async def idle(self) -> None:
        """Returns once every request the client sent has its answer written."""
        while self._unanswered:
            await self._answered.wait()

    def close(self) -> None:
        """End the session: the server loop sees the end of its input."""
        self._to_session.close()

    async def read_client(self) -> None:
        """Lines from the client to the session until EOF; then `on_eof`."""
        splitter = LineSplitter(self._limit)
        with self._answers:  # its only sender: the writer of our answers ends with it
            try:
                while chunk := await self._pipes.read():
                    for line in splitter.feed(chunk):
                        if isinstance(line, bytes):
                            await self._deliver(read_line(line))
                        else:
                            await self._deliver(read_oversized(line, self._limit))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # the session ended first
            except OSError as exc:
                logger.info("reading the client's input failed: %s", exc)
        self._on_eof("stdin closed")

    async def _deliver(self, inbound: Inbound) -> None:
        if isinstance(inbound, JSONRPCError):
            await self._answers.send(inbound)
        elif inbound is not None:
            if isinstance(inbound.message, JSONRPCRequest):
                self._unanswered.add(inbound.message.id)
            await self._to_session.send(inbound)

    async def write_client(self) -> None:
        """The session's messages and our own answers to the client, one a line."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write_answers)
                async with self._from_session:
                    async for session_message in self._from_session:
                        await self._write(session_message.message)
                tg.cancel_scope.cancel()
        finally:
            self.written.set()

    async def _write_answers(self) -> None:
        async with self._answers_out:
            async for answer in self._answers_out:
                await self._write(answer)

    async def _write(self, message: JSONRPCMessage) -> None:
        if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id is not None:
            self._unanswered.discard(message.id)
        try:
            if self._gone or self._answered_before(message):
                return
            data = encode(message)
            async with self._writing:
                await self._pipes.write(data)
        except OSError as exc:
            logger.info("the client stopped reading its output: %s", exc)
            self._gone = True
            self._unanswered.clear()
            self._on_eof("stdout closed")
        finally:
            if not self._unanswered:
                self._answered.set()
                self._answered = anyio.Event()

    def _answered_before(self, message: JSONRPCMessage) -> bool:
        """Whether `message` is the session's answer to the `initialize` answered early:
        then it is compared with the answer given, and not written."""
        early = self._answered_early
        if early is None or not isinstance(message, JSONRPCResponse | JSONRPCError):
            return False
        if message.id != early.id:
            return False
        self._answered_early = None
        given = orjson.loads(encode(message)).get("result")
        if given == early.result:
            logger.debug("the SDK's answer to the handshake is the one given early")
        else:
            logger.error(
                "the answer to the handshake given before the MCP stack was imported differs"
                " from the SDK's: %s, not %s",
                orjson.dumps(early.result).decode(),
                encode(message).decode().rstrip(),
            )
        return True
