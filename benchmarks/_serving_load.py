"""The load generator of ``benchmarks/serving.py``: open and closed loops over keep-alive HTTP/1.1.

It runs in its own process (``python benchmarks/_serving_load.py SPEC.json
OUT.json``) so that it does not share the server's interpreter. SPEC holds
``url`` (the predict URL), ``body`` (JSON), ``headers``, ``mode``
(``"open"`` or ``"closed"``), ``client`` (``"raw"`` or ``"httpx"``) and:

- open loop: ``rate`` (requests/s) and ``duration`` (s). Request ``i`` is due
  at ``start + i / rate`` whatever the answers do, and its latency runs from
  that due time (not from when it was actually sent), so a stalled server
  cannot hide its stall by slowing the sender (coordinated omission).
  Connections are reused when idle and opened when none is (up to
  ``max_connections``);
- open loop over several servers: ``targets`` (a list of ``{"url", "headers"}``)
  instead of ``url`` and ``headers``. The servers take turns in slices of
  ``slice_s`` s (default 1), with ``gap_s`` s (default 0.1) of no load
  between slices so one server's leftover work does not fall in the next
  one's slice; each gets ``rate`` requests/s during its slices, for
  ``duration`` s in all, on its own connections. A stall of the host (on a
  shared VM, for seconds at a time) then falls on all of them alike, which
  separate runs one after the other cannot promise. OUT holds ``rows`` per
  target (``rows_by_target``) in ``targets``' order;
- closed loop: ``connections`` loops, each sending its next request when the
  previous one is answered, for ``duration`` s after ``warmup`` s.

The raw client writes one precomputed request and reads the response by its
``Content-Length`` on asyncio streams: far less CPU per request than httpx,
whose overhead would otherwise cap the load on a 2-core machine (the
benchmark measures both on the floor app). OUT gets one row per request:
``[due_s, latency_ms or None, status, role, fallback_used, request_id,
server_latency_ms, overloaded]`` (the server's ``latency_ms`` and
``overloaded``; None from the floor).

>>> _request_bytes("http://127.0.0.1:8000/v1/x", b"{}", {"A": "b"}).split(b"\\r\\n")[:2]
[b'POST /v1/x HTTP/1.1', b'Host: 127.0.0.1:8000']
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

#: A row per request: due time (s), latency (ms), HTTP status, role, fallback, id, server ms,
#: overloaded.
Row = list[Any]
#: Give up on one request after this long (counted as lost, status 0).
REQUEST_TIMEOUT_S = 10.0
#: Idle connections are closed after this long: uvicorn closes them after 5 s
#: (``timeout_keep_alive``), and a request sent on one it is closing is lost.
IDLE_CLOSE_S = 3.0


def _request_bytes(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _RawConnection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> _RawConnection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
                break
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _row(due: float, latency_ms: float | None, status: int, body: bytes) -> Row:
    role = fallback = request_id = server_ms = overloaded = None
    if status == 200:
        try:
            answer = json.loads(body)
            role, fallback = answer.get("role"), answer.get("fallback_used")
            request_id, server_ms = answer.get("request_id"), answer.get("latency_ms")
            overloaded = answer.get("overloaded")
        except ValueError:
            pass
    return [round(due, 6), latency_ms, status, role, fallback, request_id, server_ms, overloaded]


def _now() -> float:
    # Not loop.time(): uvloop's clock ticks in whole milliseconds.
    return time.perf_counter()


class _Pool:
    """Idle keep-alive connections, opened on demand up to ``limit``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.url = spec["url"]
        self.body = json.dumps(spec["body"]).encode()
        self.headers = dict(spec.get("headers", {}))
        self.request = _request_bytes(self.url, self.body, self.headers)
        self.limit = int(spec.get("max_connections", 512))
        self.kind = spec.get("client", "raw")
        self.idle: list[tuple[_RawConnection, float]] = []  # (connection, idle since)
        self.opened = 0
        self.waiters: deque[asyncio.Future[_RawConnection | None]] = deque()
        self.httpx: Any = None
        if self.kind == "httpx":
            import httpx

            self.httpx = httpx.AsyncClient(
                limits=httpx.Limits(
                    max_connections=self.limit, max_keepalive_connections=self.limit
                ),
                timeout=REQUEST_TIMEOUT_S,
            )

    async def send(self) -> tuple[int, bytes]:
        if self.httpx is not None:
            response = await self.httpx.post(
                self.url,
                content=self.body,
                headers={"content-type": "application/json", **self.headers},
            )
            return response.status_code, response.content
        conn = await self._take()
        try:
            result = await conn.send(self.request)
        except BaseException:
            conn.close()
            self.opened -= 1
            self._give(None)  # a waiter may open a connection in its place
            raise
        self._give(conn)
        return result

    def _give(self, conn: _RawConnection | None) -> None:
        # Straight to the longest waiter, if any: requests at the connection limit go in order.
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is not None:
            self.idle.append((conn, _now()))

    async def _take(self) -> _RawConnection:
        # Taken last in, first out, so the first ones may have idled near the server's limit.
        while self.idle and _now() - self.idle[0][1] > IDLE_CLOSE_S:
            self.idle.pop(0)[0].close()
            self.opened -= 1
        if self.idle:
            return self.idle.pop()[0]
        if self.opened < self.limit:
            return await self._open()
        # At the connection limit: the wait counts as latency. A future per waiter, not
        # polling: hundreds of polling waiters would eat the generator's own CPU.
        waiter: asyncio.Future[_RawConnection | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            conn = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._give(waiter.result())  # handed over as this request timed out
            raise
        if conn is not None:
            return conn
        return await self._open()  # one was closed: open another in its place

    async def _open(self) -> _RawConnection:
        self.opened += 1
        try:
            return await _RawConnection.open(self.url)
        except BaseException:
            self.opened -= 1
            raise

    async def close(self) -> None:
        for conn, _ in self.idle:
            conn.close()
        if self.httpx is not None:
            await self.httpx.aclose()


async def _timed(pool: _Pool, due: float, t0: float) -> Row:
    try:
        status, body = await asyncio.wait_for(pool.send(), REQUEST_TIMEOUT_S)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
        return _row(due - t0, None, 0, b"")
    return _row(due - t0, (_now() - due) * 1000.0, status, body)


def schedule(
    rate: float, duration: float, targets: int = 1, slice_s: float = 1.0, gap_s: float = 0.1
) -> list[tuple[float, int]]:
    """``(due s from the start, target)`` of every request of an open loop, in due order.

    One target: ``rate`` requests/s for ``duration`` s. Several: they take
    turns in slices of ``slice_s`` s with ``gap_s`` s between, each at ``rate``
    during its own slices, for ``duration`` s in all.

    >>> schedule(4.0, 1.0)
    [(0.0, 0), (0.25, 0), (0.5, 0), (0.75, 0)]
    >>> [(round(t, 2), k) for t, k in schedule(2.0, 1.0, targets=2, slice_s=0.5, gap_s=0.1)]
    [(0.0, 0), (0.6, 1), (1.2, 0), (1.8, 1)]
    """
    if targets == 1:
        return [(i / rate, 0) for i in range(int(rate * duration))]
    out: list[tuple[float, int]] = []
    per_slice = rate * slice_s
    sent = [0.0] * targets  # requests each target is owed so far (fractional)
    total = int(rate * duration)
    k = 0
    while min(sent) < total:
        target, start = k % targets, k * (slice_s + gap_s)
        first = int(sent[target])
        sent[target] = min(float(total), sent[target] + per_slice)
        out.extend((start + j / rate, target) for j in range(int(sent[target]) - first))
        k += 1
    return out


async def open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """Send requests on schedule (see :func:`schedule`); latency from each due time."""
    targets = spec.get("targets") or [{"url": spec["url"], "headers": spec.get("headers", {})}]
    pools = [_Pool({**spec, **target}) for target in targets]
    due_times = schedule(
        float(spec["rate"]),
        float(spec["duration"]),
        len(pools),
        float(spec.get("slice_s", 1.0)),
        float(spec.get("gap_s", 0.1)),
    )
    t0 = _now() + 0.05
    tasks: list[tuple[int, asyncio.Task[Row]]] = []
    lag_ms = 0.0
    i, n = 0, len(due_times)
    while i < n:
        now = _now()
        due = t0 + due_times[i][0]
        if due > now:
            await asyncio.sleep(due - now)
            continue
        lag_ms = max(lag_ms, (now - due) * 1000.0)
        while i < n and t0 + due_times[i][0] <= now:  # everything due by now, each at its time
            offset, target = due_times[i]
            tasks.append((target, asyncio.create_task(_timed(pools[target], t0 + offset, t0))))
            i += 1
    rows = await asyncio.gather(*(task for _, task in tasks))
    by_target: list[list[Row]] = [[] for _ in pools]
    for (target, _), row in zip(tasks, rows, strict=True):
        by_target[target].append(row)
    for pool in pools:
        await pool.close()
    return {
        "rows": by_target[0],
        "rows_by_target": by_target,
        "max_send_lag_ms": round(lag_ms, 3),
        "connections": sum(pool.opened for pool in pools),
    }


async def closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """``connections`` loops back to back; rows for the ``duration`` after ``warmup``."""
    pool = _Pool({**spec, "max_connections": int(spec["connections"])})
    t0 = _now()
    start, end = (
        t0 + float(spec.get("warmup", 1.0)),
        t0 + float(spec.get("warmup", 1.0)) + float(spec["duration"]),
    )
    rows: list[Row] = []

    async def one_connection() -> None:
        while (now := _now()) < end:
            row = await _timed(pool, now, t0)
            if now >= start:
                rows.append(row)

    await asyncio.gather(*(one_connection() for _ in range(int(spec["connections"]))))
    elapsed = _now() - start
    await pool.close()
    return {"rows": rows, "seconds": round(elapsed, 3), "connections": pool.opened}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        spec = json.load(f)
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    started = time.perf_counter()
    result = run(open_loop(spec) if spec["mode"] == "open" else closed_loop(spec))
    result["wall_s"] = round(time.perf_counter() - started, 3)
    with open(argv[1], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
