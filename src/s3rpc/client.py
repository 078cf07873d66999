"""A Python client for s3rpc (and any Goridge v3 RPC endpoint): asyncio, pipelined, pooled.

``AsyncClient`` keeps many calls in flight on one connection, matching answers by seq;
``ClientPool`` spreads calls over several connections; ``Client`` is a thin blocking wrapper.
Failures raise :class:`RpcError` carrying the error code. Object bytes are ``bytes`` on both
sides: the codec carries them (base64 under JSON, raw under msgpack) and ``content`` in a
result comes back as ``bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Self

from s3rpc.config import parse_listen
from s3rpc.goridge import NEED_DATA, Flag, Frame, FrameDecoder, ProtocolError, parse_request
from s3rpc.goridge.codec import JSON, MSGPACK, Codec
from s3rpc.goridge.rpc import encode_request
from s3rpc.storage.models import RESULT_BYTES_FIELDS

CodecName = Literal["json", "msgpack"]
_CODECS: dict[str, Codec] = {"json": JSON, "msgpack": MSGPACK}
_ERROR_TEXT = re.compile(
    r"^(?P<code>[A-Z][A-Z0-9_]+): (?P<message>.*?)(?: \((?P<details>[^()]*)\))?$", re.S
)
BYTES_RESULT_FIELDS = RESULT_BYTES_FIELDS


class RpcError(Exception):
    """The server answered with an ERROR frame."""

    def __init__(self, text: str, method: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.method = method
        match = _ERROR_TEXT.match(text)
        self.code = match["code"] if match else "UNKNOWN"
        self.message = match["message"] if match else text
        self.details = match["details"] if match else None


class ConnectionLost(ConnectionError):
    """The connection closed before the answer arrived."""


async def open_connection(
    address: str, limit: int = 1 << 20
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    target = parse_listen(address)
    if target.scheme == "unix":
        return await asyncio.open_unix_connection(target.path, limit=limit)
    host = "127.0.0.1" if target.host in ("0.0.0.0", "") else target.host
    host = "::1" if host == "::" else host
    return await asyncio.open_connection(host, target.port, limit=limit)


class AsyncClient:
    """One connection; calls may overlap (pipelining)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, codec: CodecName = "json"
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.codec = codec
        self._seq = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._closed: BaseException | None = None
        self._read_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(
        cls, address: str = "tcp://127.0.0.1:6001", codec: CodecName = "json", timeout: float = 10.0
    ) -> AsyncClient:
        reader, writer = await asyncio.wait_for(open_connection(address), timeout)
        return cls(reader, writer, codec)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        codec: CodecName | None = None,
        timeout: float | None = 60.0,
    ) -> Any:
        if self._closed is not None:
            raise ConnectionLost("connection is closed") from self._closed
        chosen = _CODECS[codec or self.codec]
        seq = next(self._seq) & 0xFFFFFFFF
        body = chosen.encode(dict(params) if params else {})
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        try:
            try:
                self._writer.writelines(encode_request(chosen.flag, seq, method, body))
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                raise ConnectionLost(f"connection failed: {exc}") from exc
            frame = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(seq, None)
        response = parse_request(frame)
        if frame.flags & Flag.ERROR:
            raise RpcError(bytes(response.body).decode("utf-8", "replace"), method)
        result = chosen.decode(response.body)
        if isinstance(result, dict):
            for name in BYTES_RESULT_FIELDS:
                if name in result and result[name] is not None:
                    result[name] = bytes(chosen.to_bytes(result[name], name))
        return result

    async def _read_loop(self) -> None:
        decoder = FrameDecoder(max_payload=1 << 32)
        error: BaseException = ConnectionLost("server closed the connection")
        try:
            while data := await self._reader.read(256 * 1024):
                decoder.receive_data(data)
                while (frame := decoder.next_frame()) is not NEED_DATA:
                    assert isinstance(frame, Frame)
                    future = self._pending.get(frame.options[0])
                    if future is not None and not future.done():
                        future.set_result(frame)
        except (ProtocolError, ConnectionError, OSError) as exc:
            error = ConnectionLost(f"connection failed: {exc}")
        except asyncio.CancelledError:
            error = ConnectionLost("client closed")
        self._closed = error
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._read_task
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 5)


class ClientPool:
    """Several connections; each call goes to the next one (round robin)."""

    def __init__(self, clients: list[AsyncClient]) -> None:
        self._clients = clients
        self._next = itertools.cycle(range(len(clients)))

    @classmethod
    async def connect(
        cls, address: str = "tcp://127.0.0.1:6001", size: int = 4, codec: CodecName = "json"
    ) -> ClientPool:
        clients = await asyncio.gather(*(AsyncClient.connect(address, codec) for _ in range(size)))
        return cls(list(clients))

    async def call(
        self, method: str, params: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        return await self._clients[next(self._next)].call(method, params, **kwargs)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._clients))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _shut(runner: asyncio.Runner, client: AsyncClient) -> None:
    """Close ``client`` on its own loop, then the loop; never raises (it may run from GC)."""
    try:
        runner.run(client.close())
    except Exception:  # noqa: S110 - e.g. collected while another loop runs in this thread
        pass
    finally:
        with contextlib.suppress(Exception):
            runner.close()


class Client:
    """Blocking wrapper: ``with Client("tcp://127.0.0.1:6001") as c: c.call("s3.ListBuckets")``.

    Its loop and connection are closed by ``close()``, by leaving ``with``, or — for a client
    never closed — when it is garbage collected or the interpreter exits; never left for the
    loop's destructor to report a pending reader task."""

    def __init__(
        self,
        address: str = "tcp://127.0.0.1:6001",
        codec: CodecName = "json",
        timeout: float = 60.0,
    ) -> None:
        self._runner = asyncio.Runner()
        self._timeout = timeout
        try:
            self._client = self._runner.run(
                AsyncClient.connect(address, codec, timeout=min(timeout, 10.0))
            )
        except BaseException:
            self._runner.close()
            raise
        # Holds the runner and the connection, not self, so it runs when self is collected.
        self._finalizer = weakref.finalize(self, _shut, self._runner, self._client)

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        codec: CodecName | None = None,
    ) -> Any:
        return self._runner.run(
            self._client.call(method, params, codec=codec, timeout=self._timeout)
        )

    def close(self) -> None:
        self._finalizer()  # once: a second close does nothing

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
