"""Real local servers for the adapters to talk to: HTTP/1.1 in a thread, and h2c on asyncio.

Each records what it received and answers with whatever the test's `respond` function returns,
so the test can play the provider: verify the request as the provider would, then answer.
An assertion failing inside `respond` is answered with a 500 and raised again on exit, so a
check made on the server's side fails the test instead of being lost in a server thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import h2.config
import h2.connection
import h2.events


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


Answer = tuple[int, dict[str, str], bytes]
Respond = Callable[[Received], Answer]


class _Recorder:
    def __init__(self, respond: Respond) -> None:
        self.received: list[Received] = []
        self.errors: list[BaseException] = []
        self._respond = respond

    def answer(self, got: Received) -> Answer:
        self.received.append(got)
        try:
            return self._respond(got)
        except Exception as exc:
            self.errors.append(exc)
            return 500, {}, b"test server check failed"

    def reraise(self) -> None:
        if self.errors:
            raise self.errors[0]


class Http1Server(_Recorder):
    """A threaded http.server on an ephemeral 127.0.0.1 port, as a context manager."""

    def __init__(self, respond: Respond) -> None:
        super().__init__(respond)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                got = Received(
                    method="POST",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length),
                )
                status, headers, body = outer.answer(got)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test asserts on `received` instead."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> Http1Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self.reraise()


class H2cServer(_Recorder):
    """HTTP/2 over cleartext with prior knowledge (no HTTP/1.1 at all), like APNs minus TLS."""

    def __init__(self, respond: Respond) -> None:
        super().__init__(respond)
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.url = ""
        self.connections = 0  # opened by clients so far

    async def __aenter__(self) -> H2cServer:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()  # the handler then reads EOF and returns; cancelling it would log noise
        await asyncio.gather(*self._tasks)
        await self._server.wait_closed()
        self.reraise()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        try:
            while data := await reader.read(65535):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = (dict(event.headers), bytearray())  # type: ignore[arg-type]
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id][1].extend(event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        self._answer(conn, event.stream_id, *streams.pop(event.stream_id))
                writer.write(conn.data_to_send())
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    def _answer(
        self, conn: h2.connection.H2Connection, stream_id: int, headers: dict[str, str], body: bytearray
    ) -> None:
        got = Received(method=headers[":method"], path=headers[":path"], headers=headers, body=bytes(body))
        status, answer_headers, answer_body = self.answer(got)
        conn.send_headers(
            stream_id,
            [(":status", str(status)), ("content-length", str(len(answer_body))), *answer_headers.items()],
        )
        conn.send_data(stream_id, answer_body, end_stream=True)
