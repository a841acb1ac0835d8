"""The server's asyncio Redis connection, on the real Redis at 127.0.0.1:6379.

Every test runs on asyncio's own loop and on uvloop (the loop uvicorn picks
when it is installed), as their transports differ.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis

from inloop.serve.models import ServeError
from inloop.serve.resp import (
    Address,
    BlockingConnection,
    RedisConnectionError,
    RedisReplyError,
    open_connection,
    pack,
    parse_address,
)

URL = "redis://127.0.0.1:6379/0"
Run = Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Run a coroutine function to the end on the loop the test is parametrized with."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return lambda main: uvloop.run(main())
    return lambda main: asyncio.run(main())


@pytest.fixture
def key(redis_client: redis.Redis) -> Iterator[str]:
    name = f"inloop-test:resp:{uuid.uuid4().hex[:10]}"
    yield name
    redis_client.delete(name)


def test_replies_come_back_in_order_for_commands_written_together(run: Run, key: str) -> None:
    async def main() -> list[Any]:
        conn = await open_connection(parse_address(URL))
        got: list[Any] = []
        conn.send_all([(pack("INCR", key), got.append) for _ in range(200)])
        last = await conn.call("GET", key)
        conn.close()
        return [*got, last]

    replies = run(main)
    assert replies == [*range(1, 201), b"200"]


def test_then_takes_the_reply_and_gives_the_result_but_not_for_a_refusal(
    run: Run, key: str
) -> None:
    async def main() -> tuple[Any, list[Any]]:
        conn = await open_connection(parse_address(URL))
        taken: list[Any] = []

        def then(reply: Any) -> int:
            taken.append(reply)
            return int(reply) * 10

        conn.send(pack("SET", key, "4"), lambda reply: None)
        value = await conn.call("GET", key, then=then)
        with pytest.raises(RedisReplyError, match="WRONGTYPE"):
            await conn.call("XLEN", key, then=then)
        conn.close()
        return value, taken

    value, taken = run(main)
    assert value == 40 and taken == [b"4"]


def test_a_refused_command_is_an_error_and_the_connection_goes_on(
    run: Run, key: str, redis_client: redis.Redis
) -> None:
    redis_client.set(key, "a string")

    async def main() -> tuple[Any, str, Any]:
        conn = await open_connection(parse_address(URL))
        got: list[Any] = []
        conn.send(pack("XADD", key, "*", "f", "v"), got.append)
        with pytest.raises(RedisReplyError) as refused:
            await conn.call("LPUSH", key, "x")
        after = await conn.call("GET", key)
        conn.close()
        return got[0], str(refused.value), after

    sent, refused, after = run(main)
    assert isinstance(sent, RedisReplyError) and sent.args[0].startswith("WRONGTYPE")
    assert refused.startswith("WRONGTYPE")
    assert after == b"a string"


def test_a_lost_connection_fails_the_commands_waiting_for_a_reply(
    run: Run, key: str, redis_client: redis.Redis
) -> None:
    name = f"inloop-test-{uuid.uuid4().hex[:8]}"

    async def main() -> tuple[BaseException, bool, Any]:
        conn = await open_connection(parse_address(URL), name=name)
        blocked = conn.call("XREAD", "BLOCK", 10_000, "STREAMS", key, "0-0")
        await asyncio.sleep(0.1)
        (mine,) = [c for c in redis_client.client_list() if c["name"] == name]
        redis_client.client_kill_filter(_id=mine["id"])
        with pytest.raises(RedisConnectionError) as lost:
            await asyncio.wait_for(blocked, 5)
        later: list[Any] = []
        conn.send(pack("PING"), later.append)
        return lost.value, conn.is_open, later[0]

    lost, is_open, later = run(main)
    assert "lost" in str(lost)
    assert not is_open
    assert isinstance(later, RedisConnectionError)


def test_the_url_chooses_the_database_and_names_the_connection(
    run: Run, key: str, redis_client: redis.Redis
) -> None:
    async def main() -> Any:
        conn = await open_connection(parse_address("redis://127.0.0.1:6379/5"), name="inl-db5")
        await conn.call("SET", key, "in five")
        names = await conn.call("CLIENT", "GETNAME")
        conn.close()
        return names

    assert run(main) == b"inl-db5"
    other = redis.Redis.from_url("redis://127.0.0.1:6379/5")
    try:
        assert other.get(key) == b"in five"
        assert redis_client.get(key) is None
        other.delete(key)
    finally:
        other.close()


def test_unreachable_or_refusing_redis_is_a_clear_error(run: Run) -> None:
    async def unreachable() -> None:
        await open_connection(Address(host="127.0.0.1", port=1, connect_timeout=1.0))

    with pytest.raises(RedisConnectionError, match=r"cannot connect to Redis at 127\.0\.0\.1:1 "):
        run(unreachable)

    async def wrong_password() -> None:
        await open_connection(parse_address("redis://:not-the-password@127.0.0.1:6379/0"))

    # This Redis has no password: it refuses AUTH, and the error says so.
    with pytest.raises(RedisReplyError, match="AUTH"):
        run(wrong_password)


def test_parse_address_reads_what_redis_py_reads() -> None:
    plain = parse_address("redis://alice:s3cret@cache:6380/3?socket_connect_timeout=0.5")
    assert (plain.host, plain.port, plain.db, plain.username, plain.password) == (
        "cache",
        6380,
        3,
        "alice",
        "s3cret",
    )
    assert plain.connect_timeout == 0.5 and plain.ssl is None and plain.path is None
    unix = parse_address("unix:///run/redis.sock?db=2")
    assert (unix.path, unix.db) == ("/run/redis.sock", 2)
    secure = parse_address("rediss://cache:6390/0")
    assert secure.ssl is not None and secure.ssl.verify_mode == ssl.CERT_REQUIRED
    lax = parse_address("rediss://cache/0?ssl_cert_reqs=none")
    assert lax.ssl is not None and lax.ssl.verify_mode == ssl.CERT_NONE


def test_parse_address_refuses_options_it_would_ignore() -> None:
    with pytest.raises(ServeError, match="health_check_interval") as refused:
        parse_address("redis://127.0.0.1:6379/0?health_check_interval=5")
    assert "socket_connect_timeout" in str(refused.value)  # what it does understand


def test_a_blocking_connection_gives_replies_in_order_with_refusals_in_place(
    key: str, redis_client: redis.Redis
) -> None:
    conn = BlockingConnection(parse_address(URL), name="inloop-test-blocking")
    try:
        replies = conn.call_all(
            [
                pack("XADD", key, "*", "job", "é 1"),
                pack("LPUSH", key, "x"),  # a stream is not a list: refused, the rest go on
                pack("XRANGE", key, "-", "+"),
                pack("XREAD", "COUNT", 1, "BLOCK", 50, "STREAMS", key + ":none", "$"),
            ]
        )
    finally:
        conn.close()
    entry_id, refused, entries, nothing = replies
    assert isinstance(entry_id, str) and entry_id.count("-") == 1
    assert isinstance(refused, RedisReplyError) and "WRONGTYPE" in str(refused)
    assert entries == [[entry_id, ["job", "é 1"]]]  # bulk strings come back as str
    assert nothing is None  # nothing within the block time
    assert not conn.is_open
    with pytest.raises(RedisConnectionError, match="closed"):
        conn.call_all([pack("PING")])


def test_a_blocking_connection_that_redis_drops_says_so_and_stays_closed(
    redis_client: redis.Redis,
) -> None:
    conn = BlockingConnection(parse_address(URL), name="inloop-test-dropped")
    assert conn.call_all([pack("PING")]) == ["PONG"]
    (mine,) = [c for c in redis_client.client_list() if c["name"] == "inloop-test-dropped"]
    redis_client.client_kill_filter(_id=mine["id"])
    with pytest.raises(RedisConnectionError, match="lost"):
        conn.call_all([pack("PING")])
    assert not conn.is_open
    # A refused login and an unreachable Redis are errors at once, not hangs.
    with pytest.raises(RedisReplyError, match="AUTH"):
        BlockingConnection(parse_address("redis://:wrong@127.0.0.1:6379/0"))
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        BlockingConnection(parse_address("redis://127.0.0.1:1/0?socket_connect_timeout=1"))
