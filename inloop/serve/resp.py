"""Small Redis connections: asyncio for the server's side of :class:`RedisTransport`, and
a blocking one for a model worker's reader.

Each request puts one job on Redis and takes its scores back. redis-py's
asyncio client spends about 90 µs of event-loop time per command; its sync
client in a thread costs a GIL hand-over per job instead, a millisecond or
more at the tail while the loop is busy with other requests. This connection
writes each command from the loop at once and lets hiredis (C) parse the
replies as they arrive, in about a tenth of that time. It speaks only what
the transport needs: commands out, replies back in order, Redis's refusals
as :class:`RedisReplyError` values. It reads the same URLs as redis-py.

A worker's reader sends its scores, acknowledgements and next XREADGROUP in
one round trip per batch of jobs; redis-py's pipeline spends more of the
worker's CPU on building and parsing those than the worker spends scoring.
:class:`BlockingConnection` does the same round trip with one write and
hiredis.

>>> pack("XADD", "s", "*", "f", 1)
b'*5\\r\\n$4\\r\\nXADD\\r\\n$1\\r\\ns\\r\\n$1\\r\\n*\\r\\n$1\\r\\nf\\r\\n$1\\r\\n1\\r\\n'
>>> address = parse_address("redis://:s3cret@cache:6380/2")
>>> address.host, address.port, address.db, address.password
('cache', 6380, 2, 's3cret')
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from inloop.errors import MissingExtraError

try:
    from redis.connection import parse_url
except ImportError as exc:  # an ImportError too, with the pip install to run
    raise MissingExtraError(
        "redis", "Serving over Redis Streams (INLOOP_STREAM_URL)", exc
    ) from None

from inloop.serve.models import ServeError

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis comes with the redis extra
    hiredis = None  # type: ignore[assignment]

__all__ = [
    "Address",
    "BlockingConnection",
    "RedisConnectionError",
    "RedisReplyError",
    "RespConnection",
    "hiredis_available",
    "open_connection",
    "pack",
    "parse_address",
]

#: What a reply callback gets: the reply, or the error that took its place.
OnReply = Callable[[Any], None]

#: URL options this connection understands (others are refused, not ignored).
_OPTIONS = (
    "db",
    "username",
    "password",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_check_hostname",
    "socket_connect_timeout",
)


class RedisReplyError(Exception):
    """Redis refused a command; the message is Redis's own (``WRONGTYPE ...``)."""


class RedisConnectionError(ConnectionError):
    """The connection to Redis failed or was lost before a command's reply came."""


def pack(*args: str | bytes | int | float) -> bytes:
    """One command in the Redis protocol (RESP): an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


@dataclass(frozen=True)
class Address:
    """Where Redis is and how to log in, as read from a ``redis://`` URL."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a unix socket, for unix:// URLs
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: ssl.SSLContext | None = None
    connect_timeout: float = 2.0


def parse_address(url: str) -> Address:
    """The :class:`Address` of ``url`` (``redis://``, ``rediss://`` or ``unix://``).

    A :class:`ServeError` names any URL option this connection does not
    understand, with those it does.
    """
    from redis.connection import SSLConnection, UnixDomainSocketConnection

    options = dict(parse_url(url))
    kind = options.pop("connection_class", None)
    host = options.pop("host", None) or "localhost"
    port = int(options.pop("port", None) or 6379)
    path = options.pop("path", None)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ServeError(
            f"The stream URL has option(s) {', '.join(unknown)} that the server's Redis "
            f"connection does not understand; it understands {', '.join(_OPTIONS)}."
        )
    context = None
    if kind is SSLConnection:
        context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
        if options.get("ssl_check_hostname") is False:
            context.check_hostname = False
        if str(options.get("ssl_cert_reqs", "required")).lower() in ("none", "cert_none"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    return Address(
        host=host,
        port=port,
        path=path if kind is UnixDomainSocketConnection else None,
        db=int(options.get("db") or 0),
        username=options.get("username"),
        password=options.get("password"),
        ssl=context,
        connect_timeout=float(options.get("socket_connect_timeout") or 2.0),
    )


class RespConnection(asyncio.Protocol):
    """One connection: :meth:`send` writes a command, its reply goes to its callback.

    Redis answers the commands of a connection in the order they were sent,
    so the callbacks wait in a queue. A reply Redis refused arrives as a
    :class:`RedisReplyError`; when the connection is lost, every callback still
    waiting gets a :class:`RedisConnectionError`.
    """

    def __init__(self) -> None:
        if hiredis is None:
            raise ServeError(
                "The Redis Streams transport needs hiredis: pip install 'inloop[redis]'."
            )
        self._parser = hiredis.Reader()
        self._waiting: deque[OnReply] = deque()
        self._transport: asyncio.Transport | None = None
        self._lost: BaseException | None = None

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self._lost is None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they do the same.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        while True:
            try:
                reply = self._parser.gets()
            except hiredis.ProtocolError as exc:
                # The stream is garbled from here on: drop the connection.
                assert self._transport is not None
                self._transport.abort()
                self._lost = RedisConnectionError(f"garbled reply from Redis: {exc}")
                return
            if reply is False:
                return
            if isinstance(reply, hiredis.ReplyError):
                reply = RedisReplyError(str(reply))
            if self._waiting:
                self._waiting.popleft()(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            self._lost = RedisConnectionError(
                f"the connection to Redis was lost ({exc or 'closed by Redis'})"
            )
        while self._waiting:
            self._waiting.popleft()(self._lost)

    def send(self, command: bytes, on_reply: OnReply) -> None:
        """Write ``command`` (see :func:`pack`); its reply goes to ``on_reply``."""
        self.send_all([(command, on_reply)])

    def send_all(self, commands: list[tuple[bytes, OnReply]]) -> None:
        """Write several commands in one system call, each with its reply's callback."""
        if not self.is_open:
            lost = self._lost or RedisConnectionError("the connection to Redis is closed")
            for _, on_reply in commands:
                on_reply(lost)
            return
        assert self._transport is not None
        self._waiting.extend(on_reply for _, on_reply in commands)
        self._transport.write(b"".join(command for command, _ in commands))

    def call(
        self, *args: str | bytes | int | float, then: Callable[[Any], Any] | None = None
    ) -> asyncio.Future[Any]:
        """Send one command; the future's result is its reply (Redis's refusal is raised).

        ``then``, if given, takes the reply as soon as it is parsed, a loop
        turn before a task awaiting the future would; what it returns is the
        future's result.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def settle(reply: Any) -> None:
            if future.done():
                return
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply if then is None else then(reply))

        self.send(pack(*args), settle)
        return future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._lost is None:
            self._lost = RedisConnectionError("the connection to Redis was closed")


async def open_connection(address: Address, name: str | None = None) -> RespConnection:
    """Connect to ``address``, log in, select its database and name the connection.

    ``name`` is what ``CLIENT LIST`` shows for it, so an operator can tell
    the connections apart.
    Raises :class:`RedisConnectionError` when Redis cannot be reached in
    time, :class:`RedisReplyError` when it refuses the login or database.
    """
    loop = asyncio.get_running_loop()
    try:
        if address.path is not None:
            opening = loop.create_unix_connection(RespConnection, address.path, ssl=address.ssl)
        else:
            opening = loop.create_connection(
                RespConnection, address.host, address.port, ssl=address.ssl
            )
        _, conn = await asyncio.wait_for(opening, address.connect_timeout)
    except (OSError, TimeoutError) as exc:
        where = address.path or f"{address.host}:{address.port}"
        raise RedisConnectionError(f"cannot connect to Redis at {where} ({exc!r})") from None
    try:
        for command in _login(address, name):
            await conn.call(*command)
    except BaseException:
        conn.close()
        raise
    return conn


def _login(address: Address, name: str | None) -> list[tuple[str | int, ...]]:
    """The commands a new connection sends first: log in, select the database, name itself."""
    commands: list[tuple[str | int, ...]] = []
    if address.password is not None:
        user = (address.username,) if address.username else ()
        commands.append(("AUTH", *user, address.password))
    if address.db:
        commands.append(("SELECT", address.db))
    if name:
        commands.append(("CLIENT", "SETNAME", name))
    return commands


def hiredis_available() -> bool:
    """Whether hiredis (which both connections here parse with) is installed."""
    return hiredis is not None


class BlockingConnection:
    """One blocking connection, for one thread: commands out in one write, replies in order.

    Bulk strings come back as ``str`` (UTF-8), as from redis-py with
    ``decode_responses=True``. A command Redis refused gets a
    :class:`RedisReplyError` in its place; a lost connection, or no reply
    within ``timeout_s``, raises :class:`RedisConnectionError` and closes the
    connection (open a new one).
    """

    def __init__(self, address: Address, name: str | None = None, timeout_s: float = 30.0) -> None:
        if hiredis is None:
            raise ServeError("A Redis Streams worker needs hiredis: pip install 'inloop[redis]'.")
        where = address.path or f"{address.host}:{address.port}"
        try:
            if address.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(address.connect_timeout)
                sock.connect(address.path)
            else:
                sock = socket.create_connection(
                    (address.host, address.port), address.connect_timeout
                )
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if address.ssl is not None:
                sock = address.ssl.wrap_socket(sock, server_hostname=address.host)
            sock.settimeout(timeout_s)
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis at {where} ({exc!r})") from None
        self._sock: socket.socket | None = sock
        self._parser = hiredis.Reader(encoding="utf-8")
        login = [pack(*command) for command in _login(address, name)]
        for reply in self.call_all(login) if login else ():
            if isinstance(reply, RedisReplyError):
                self.close()
                raise reply

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def call_all(self, commands: list[bytes]) -> list[Any]:
        """Send ``commands`` (see :func:`pack`) in one write; their replies, in order."""
        sock = self._sock
        if sock is None:
            raise RedisConnectionError("the connection to Redis is closed")
        replies: list[Any] = []
        try:
            sock.sendall(b"".join(commands))
            while len(replies) < len(commands):
                reply = self._parser.gets()
                if reply is False:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed by Redis")
                    self._parser.feed(data)
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    reply = RedisReplyError(str(reply))
                replies.append(reply)
        except (OSError, hiredis.ProtocolError) as exc:
            # Replies may be half read: this connection cannot be trusted any more.
            self.close()
            raise RedisConnectionError(f"the connection to Redis was lost ({exc!r})") from None
        return replies

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
