"""A TCP fault proxy on 127.0.0.1: put it between one client and a shared server, then cut that link only.

Tests must never stop the shared world's apiserver or livekit-servers (other tests run beside them), so a test
points its own client (a kubeconfig, a gateway's region URL) at a proxy in front of the server and breaks the
proxy instead. Bytes are forwarded untouched, so TLS passes through (the server's certificate names 127.0.0.1,
not a port), and so do WebSockets and HTTP/2.

Faults, each switchable at any moment from any thread:

- ``forward()``: the healthy link (the start state).
- ``refuse()``: every new connection is reset at once, as a client sees a server whose process is gone; open
  connections are left alone (add ``reset_connections()`` for a crash: ``cut()`` does both).
- ``blackhole()``: a partition: connections are accepted but nothing flows either way (bytes wait in the socket
  buffers, as TCP would retransmit them), so clients hang until their own timeouts; ``forward()`` lets the
  held bytes through again, like a healed network.
- ``reset_connections()``: every open connection is closed with a TCP RST (SO_LINGER 0) on both sides.

The listening port stays bound for the proxy's life (a refused link is an immediate reset, not a closed port),
so no other process can take the port during a fault. The proxy runs its own event loop in a daemon thread, so
synchronous and asynchronous tests (and the chaos benchmark) drive it the same way.

    with FaultProxy("127.0.0.1", apiserver_port) as proxy:
        server = f"https://127.0.0.1:{proxy.port}"
        proxy.cut(); ...; proxy.forward()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

FORWARD, REFUSE, BLACKHOLE = "forward", "refuse", "blackhole"
_CHUNK = 64 * 1024
T = TypeVar("T")


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, not a FIN: the peer sees 'connection reset', as when a process or a host dies."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection: the client's side and the upstream's side."""

    def __init__(self, client: asyncio.StreamWriter):
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task = asyncio.current_task()  # the accepting task, which runs both directions' pumps

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                _abort(writer)

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.close()


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, listen_port: int = 0, name: str = "fault-proxy"):
        self.upstream = (upstream_host, upstream_port)
        self.name = name
        self.mode = FORWARD
        self.port = listen_port
        self.accepted = 0  # connections taken since start (a test can see its client really came through here)
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._flowing: asyncio.Event | None = None

    @classmethod
    def in_front_of(cls, url: str, **kwargs) -> "FaultProxy":
        """A proxy for the host:port of an http(s)/ws(s) URL (not yet started)."""
        parts = urlsplit(url)
        default = 443 if parts.scheme in ("https", "wss") else 80
        return cls(parts.hostname or "127.0.0.1", parts.port or default, **kwargs)

    def url_for(self, url: str) -> str:
        """The same URL with its host:port replaced by this proxy's (scheme and path kept)."""
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, f"127.0.0.1:{self.port}", parts.path, parts.query, parts.fragment))

    # --- life -------------------------------------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as error:  # noqa: BLE001 - handed to the starting thread
                failure.append(error)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._shut())
            loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- faults (callable from any thread) ----------------------------------------------------------------------

    def forward(self) -> None:
        self._call(self._set_mode(FORWARD))

    def refuse(self) -> None:
        self._call(self._set_mode(REFUSE))

    def blackhole(self) -> None:
        self._call(self._set_mode(BLACKHOLE))

    def reset_connections(self) -> int:
        """Reset every open connection; returns how many there were."""
        return self._call(self._reset_all())

    def cut(self) -> int:
        """The server as its clients see it when its process dies: new connections reset, open ones too."""
        self.refuse()
        return self.reset_connections()

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # --- inside the proxy's loop ------------------------------------------------------------------------------

    def _call(self, coroutine: Awaitable[T]) -> T:
        if self._loop is None:
            raise RuntimeError(f"{self.name} is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [link.task for link in self._links if link.task is not None]
        await self._reset_all()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _set_mode(self, mode: str) -> None:
        self.mode = mode
        assert self._flowing is not None
        if mode == BLACKHOLE:
            self._flowing.clear()
        else:
            self._flowing.set()

    async def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
            if link.task is not None and link.task is not asyncio.current_task():
                link.task.cancel()  # its pumps may be waiting out a partition: they end now
        self._links.clear()
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == REFUSE:
            _abort(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            assert self._flowing is not None
            await self._flowing.wait()  # a partition holds new connections too, before the upstream hears of them
            if self.mode == REFUSE or link not in self._links:
                link.abort()
                return
            try:
                up_reader, link.upstream = await asyncio.open_connection(*self.upstream)
            except OSError:
                link.abort()  # the upstream itself is down: the client sees its connection reset, as it would
                return
            results = await asyncio.gather(self._pump(reader, link.upstream, link),
                                           self._pump(up_reader, writer, link), return_exceptions=True)
            if any(isinstance(result, BaseException) for result in results):
                link.abort()
            else:
                link.close()
        except asyncio.CancelledError:
            pass  # reset by reset_connections() or the proxy's stop
        finally:
            self._links.discard(link)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(_CHUNK)
                await self._flowing.wait()  # read before the partition began: held, not delivered, until it heals
                if not data:
                    # A half-close (FIN) passes through; the other direction may still be talking.
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            link.abort()  # one side broke: so does the other, and its pump ends
            raise
