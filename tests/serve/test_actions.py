"""Webhook actions against a real HTTP receiver, on SQLite and PostgreSQL: matching,
delivery, retries with backoff, permanent failures, resuming and listing deliveries."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from inloop.serve import (
    Action,
    MajorityClass,
    PolicyError,
    ServeError,
    ServiceNotFoundError,
    create_service,
    register,
    set_policy,
)
from inloop.serve.actions import ActionDispatcher, Delivery, list_deliveries, matching
from inloop.serve.tables import serve_services
from inloop.settings import reset_settings
from inloop.store import get_engine

SERVICE = "spam-svc"


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers as told.

    ``fail_first`` calls answer 500; ``status`` is the answer after that;
    ``sleep_first`` calls sleep ``sleep_s`` before answering.
    """

    url: str = ""
    calls: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    fail_first: int = 0
    status: int = 200
    sleep_first: int = 0
    sleep_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, float]:
        with self.lock:
            self.calls.append((headers, body))
            n = len(self.calls)
        sleep = self.sleep_s if n <= self.sleep_first else 0.0
        return (500 if n <= self.fail_first else self.status), sleep

    def attempts(self) -> list[int]:
        return [int(h["x-inloop-attempt"]) for h, _ in self.calls]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, sleep = state.answer(headers, body)
            time.sleep(sleep)
            payload = b"receiver says no" if status >= 300 else b"ok"
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up waiting (the timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.handle_error = lambda request, address: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receivers here listen on 127.0.0.1, which webhooks may reach only when allowed."""
    monkeypatch.setenv("INLOOP_WEBHOOK_ALLOW", "127.0.0.1")
    reset_settings()


def forbid_private(monkeypatch: pytest.MonkeyPatch) -> None:
    """Back to the default: no private address allowed."""
    monkeypatch.delenv("INLOOP_WEBHOOK_ALLOW")
    reset_settings()


@pytest.fixture
def service_id(db_url: str) -> Callable[..., int]:
    """Create the service with the given actions; returns its service_id."""

    def make(*actions: Action) -> int:
        register(MajorityClass(["ham", "spam"], [1, 3]), name="spam-model")
        create_service(
            SERVICE,
            {"champion": "spam-model@1", "fallback": {"label": "ham"}, "actions": actions},
            created_by="ana",
            reason="alerts",
        )
        with get_engine().connect() as conn:
            found = conn.execute(
                select(serve_services.c.service_id).where(serve_services.c.name == SERVICE)
            ).scalar_one()
        return int(found)

    return make


def hook(url: str, **kwargs: Any) -> Action:
    return Action(name=kwargs.pop("name", "alert"), url=url, **kwargs)


def send(dispatcher: ActionDispatcher, sid: int, action: Action, **kwargs: Any) -> list[int]:
    """Dispatch one answer: prediction 'spam' with probability 0.75."""
    args: dict[str, Any] = {
        "service_id": sid,
        "service": SERVICE,
        "request_id": "r-1",
        "revision": 1,
        "model": "spam-model@1",
        "actions": [action],
        "predictions": ["spam"],
        "probabilities": [[0.25, 0.75]],
        "classes": ["ham", "spam"],
    }
    return dispatcher.dispatch(**{**args, **kwargs})


def settled(delivery_id: int, timeout: float = 10.0) -> Delivery:
    """The delivery once it is no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        found = {d.delivery_id: d for d in list_deliveries(SERVICE)}[delivery_id]
        if found.status != "pending" or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def test_matching_by_label_probability_and_missing_probability() -> None:
    spam = hook("http://127.0.0.1:9/", name="spam", when={"label": "spam"})
    sure = hook("http://127.0.0.1:9/", name="sure", when={"min_probability": 0.8})
    three = hook("http://127.0.0.1:9/", name="three", when={"label": 3})
    found = matching(
        [spam, sure],
        ["spam", "ham", "spam"],
        [[0.1, 0.9], [0.85, 0.15], [0.3, 0.7]],
        ["ham", "spam"],
    )
    assert [(a.name, i, p) for a, i, p in found] == [
        ("spam", 0, 0.9),
        ("sure", 0, 0.9),
        ("sure", 1, 0.85),
        ("spam", 2, 0.7),
    ]
    # A default answer has no probabilities: only min_probability == 0 matches it.
    assert [(a.name, p) for a, _, p in matching([spam, sure], ["spam"], None, None)] == [
        ("spam", None)
    ]
    # Labels compare exactly: "3" is not 3, and True is not 1.
    assert [i for _, i, _ in matching([three], [3, "3", 3.0], None, None)] == [0, 2]
    assert matching([hook("http://x.io/", when={"label": True})], [1, True], None, None)[0][1] == 1
    assert matching([], ["spam"], None, None) == []


def test_delivered_on_first_try_with_payload_and_headers(
    receiver: Receiver, service_id: Callable[..., int]
) -> None:
    action = hook(receiver.url, when={"label": "spam"}, headers={"Authorization": "Bearer t"})
    sid = service_id(action)
    with ActionDispatcher(backoff_s=0.01) as dispatcher:
        # Nothing matches: no row, no call.
        assert send(dispatcher, sid, action, predictions=["ham"], request_id="r-0") == []
        (delivery_id,) = send(dispatcher, sid, action)
        done = settled(delivery_id)
    assert (done.status, done.attempts, done.response_status, done.error) == (
        "delivered",
        1,
        200,
        None,
    )
    expected = {
        "service": SERVICE,
        "action": "alert",
        "request_id": "r-1",
        "position": 0,
        "prediction": "spam",
        "probability": 0.75,
        "model": "spam-model@1",
        "revision": 1,
        "delivery_id": delivery_id,
    }
    assert done.payload == expected and done.url == receiver.url and done.request_id == "r-1"
    ((headers, body),) = receiver.calls
    assert body == expected
    assert headers["authorization"] == "Bearer t"
    assert headers["x-inloop-delivery"] == str(delivery_id) and headers["x-inloop-attempt"] == "1"


def test_retried_after_two_500s_then_delivered(
    receiver: Receiver, service_id: Callable[..., int]
) -> None:
    receiver.fail_first = 2
    action = hook(receiver.url)
    sid = service_id(action)
    with ActionDispatcher(backoff_s=0.01) as dispatcher:
        (delivery_id,) = send(dispatcher, sid, action)
        done = settled(delivery_id)
    assert (done.status, done.attempts, done.response_status) == ("delivered", 3, 200)
    assert receiver.attempts() == [1, 2, 3]


def test_failed_after_max_attempts_is_logged(
    receiver: Receiver, service_id: Callable[..., int], caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 503
    action = hook(receiver.url, max_attempts=3)
    sid = service_id(action)
    with (
        caplog.at_level(logging.WARNING, logger="inloop.serve.actions"),
        ActionDispatcher(backoff_s=0.01) as dispatcher,
    ):
        (delivery_id,) = send(dispatcher, sid, action)
        done = settled(delivery_id)
    assert (done.status, done.attempts, done.response_status) == ("failed", 3, 503)
    assert done.error == "HTTP 503: receiver says no"
    assert receiver.attempts() == [1, 2, 3]
    (logged,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(delivery_id) in logged
    assert "/hook" not in logged and receiver.url.replace("/hook", "/***") in logged


def test_400_is_not_retried(receiver: Receiver, service_id: Callable[..., int]) -> None:
    receiver.status = 400
    action = hook(receiver.url, max_attempts=5)
    sid = service_id(action)
    with ActionDispatcher(backoff_s=0.01) as dispatcher:
        (delivery_id,) = send(dispatcher, sid, action)
        done = settled(delivery_id)
    assert (done.status, done.attempts, done.response_status) == ("failed", 1, 400)
    assert len(receiver.calls) == 1


def test_connection_refused_recorded_as_failed(service_id: Callable[..., int]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    action = hook(f"http://127.0.0.1:{port}/hook", max_attempts=2)
    sid = service_id(action)
    with ActionDispatcher(backoff_s=0.01) as dispatcher:
        (delivery_id,) = send(dispatcher, sid, action)
        done = settled(delivery_id)
    assert (done.status, done.attempts, done.response_status) == ("failed", 2, None)
    assert done.error is not None and done.error.startswith("ConnectError")


def test_timeout_is_retried(receiver: Receiver, service_id: Callable[..., int]) -> None:
    receiver.sleep_first, receiver.sleep_s = 1, 1.0
    action = hook(receiver.url, timeout_s=0.2)
    sid = service_id(action)
    with ActionDispatcher(backoff_s=0.01) as dispatcher:
        (delivery_id,) = send(dispatcher, sid, action)
        done = settled(delivery_id)
    assert (done.status, done.attempts, done.response_status) == ("delivered", 2, 200)
    assert receiver.attempts() == [1, 2]


def test_stop_leaves_waiting_retries_pending_and_resume_delivers_them(
    receiver: Receiver, service_id: Callable[..., int]
) -> None:
    receiver.fail_first = 1
    action = hook(receiver.url, when={"label": "spam"})
    sid = service_id(action)
    dispatcher = ActionDispatcher(backoff_s=30.0).start()
    (delivery_id,) = send(dispatcher, sid, action)
    deadline = time.monotonic() + 10
    while list_deliveries(SERVICE)[0].attempts == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    dispatcher.stop(timeout=5.0)
    assert time.monotonic() - began < 2  # a waiting retry holds no thread
    (left,) = list_deliveries(SERVICE)
    assert (left.status, left.attempts, left.response_status) == ("pending", 1, 500)

    with ActionDispatcher(backoff_s=0.01) as again:
        assert again.resume_pending(SERVICE) == 1
        assert again.resume_pending() == 0  # already queued or delivered: not twice
        done = settled(delivery_id)
    assert (done.status, done.attempts) == ("delivered", 2)
    assert receiver.attempts() == [1, 2]


def test_resume_pending_delivers_a_row_left_by_a_crash(
    receiver: Receiver, service_id: Callable[..., int]
) -> None:
    action = hook(receiver.url, headers={"X-Team": "fraud"})
    sid = service_id(action)
    crashed = ActionDispatcher()  # never started: as if the process died at once
    (delivery_id,) = send(crashed, sid, action)
    crashed.stop()
    assert list_deliveries(SERVICE, status="pending")[0].attempts == 0

    with ActionDispatcher(backoff_s=0.01, threads=1) as dispatcher:
        assert dispatcher.resume_pending() == 1
        done = settled(delivery_id)
    assert (done.status, done.attempts) == ("delivered", 1)
    ((headers, body),) = receiver.calls
    assert headers["x-team"] == "fraud" and body["delivery_id"] == delivery_id
    with pytest.raises(ServiceNotFoundError, match="nope"):
        ActionDispatcher().resume_pending("nope")


def test_list_deliveries_filters_orders_and_rejects_bad_arguments(
    receiver: Receiver, service_id: Callable[..., int]
) -> None:
    receiver.status = 400
    action = hook(receiver.url)
    sid = service_id(action)
    stopped = ActionDispatcher()
    pending = send(stopped, sid, action, request_id="r-pending")
    stopped.stop()
    with ActionDispatcher(backoff_s=0.01) as dispatcher:
        ids = send(
            dispatcher,
            sid,
            action,
            request_id="r-two",
            predictions=["spam", "ham"],
            probabilities=[[0.25, 0.75], [0.9, 0.1]],
        )
        for delivery_id in ids:
            settled(delivery_id)
    assert len(ids) == 2
    everything = list_deliveries(SERVICE)
    assert [d.delivery_id for d in everything] == sorted([*pending, *ids], reverse=True)
    assert [d.payload["prediction"] for d in everything[:2]] == ["ham", "spam"]
    assert [d.delivery_id for d in list_deliveries(SERVICE, status="pending")] == pending
    assert {d.request_id for d in list_deliveries(SERVICE, status="failed")} == {"r-two"}
    assert list_deliveries(SERVICE, status="delivered") == []
    assert len(list_deliveries(SERVICE, limit=1)) == 1
    with pytest.raises(ServeError, match=r"pending, delivered, failed.*'sent'"):
        list_deliveries(SERVICE, status="sent")
    with pytest.raises(ServeError, match="limit"):
        list_deliveries(SERVICE, limit=0)
    with pytest.raises(ServiceNotFoundError, match=r"'nope'.*'spam-svc'"):
        list_deliveries("nope")


def test_one_request_matching_a_thousand_times_posts_max_per_request_and_counts_the_rest(
    receiver: Receiver, service_id: Callable[..., int]
) -> None:
    action = hook(receiver.url)  # the defaults: 10 a request, 10 a second
    sid = service_id(action)
    n = 1000
    with ActionDispatcher(backoff_s=0.01) as dispatcher:
        ids = send(
            dispatcher, sid, action, predictions=["spam"] * n, probabilities=[[0.1, 0.9]] * n
        )
        assert len(ids) == action.max_per_request == 10
        assert {settled(i).status for i in ids} == {"delivered"}
    assert len(receiver.calls) == 10
    assert sorted(body["position"] for _, body in receiver.calls) == list(range(10))
    (dropped,) = list_deliveries(SERVICE, status="dropped")
    assert dropped.payload["dropped"] == n - 10 and dropped.payload["over_request_limit"] == n - 10
    assert dropped.payload["over_rate_limit"] == 0 and dropped.attempts == 0
    assert "990 matching instance(s) not sent" in (dropped.error or "")


def test_max_per_second_holds_across_requests(
    receiver: Receiver, service_id: Callable[..., int]
) -> None:
    # One delivery a hundred seconds: the bucket holds one, and it is spent at once.
    action = hook(receiver.url, max_per_request=5, max_per_second=0.01)
    sid = service_id(action)
    with ActionDispatcher(backoff_s=0.01) as dispatcher:
        sent = [
            send(
                dispatcher,
                sid,
                action,
                request_id=f"r-{k}",
                predictions=["spam"] * 7,
                probabilities=[[0.1, 0.9]] * 7,
            )
            for k in range(3)
        ]
        assert [len(ids) for ids in sent] == [1, 0, 0]
        settled(sent[0][0])
    assert len(receiver.calls) == 1
    drops = {d.request_id: d.payload for d in list_deliveries(SERVICE, status="dropped")}
    assert {r: (p["over_request_limit"], p["over_rate_limit"]) for r, p in drops.items()} == {
        "r-0": (2, 4),
        "r-1": (2, 5),
        "r-2": (2, 5),
    }


@pytest.mark.parametrize(
    ("url", "refused", "allow"),
    [
        ("http://127.0.0.1:9/hook", "127.0.0.1 is a loopback", "127.0.0.1"),
        ("http://localhost:9/hook", "resolves to (127.0.0.1|::1) is a loopback", "127.0.0.1,::1"),
        ("http://[::1]:9/hook", "::1 is a loopback", "::1"),
        (
            "http://169.254.169.254/latest/meta-data",
            "169.254.169.254 is a link-local",
            "169.254.0.0/16",
        ),
        ("https://10.1.2.3/hook", "10.1.2.3 is a private", "10.0.0.0/8"),
        ("http://[::ffff:192.168.0.7]/hook", "192.168.0.7 is a private", "192.168.0.7"),
        ("http://0.0.0.0:8000/hook", "0.0.0.0 is an unspecified", "0.0.0.0"),
    ],
)
def test_private_addresses_are_refused_when_the_policy_is_written(
    db_url: str, monkeypatch: pytest.MonkeyPatch, url: str, refused: str, allow: str
) -> None:
    forbid_private(monkeypatch)
    register(MajorityClass(["ham", "spam"], [1, 3]), name="spam-model")
    policy = {
        "champion": "spam-model@1",
        "fallback": {"label": "ham"},
        "actions": [{"name": "internal", "url": url}],
    }
    with pytest.raises(
        PolicyError, match=rf"Action 'internal' may not post to .*{refused} address"
    ):
        create_service(SERVICE, policy, created_by="ana", reason="alerts")
    with pytest.raises(ServiceNotFoundError):
        list_deliveries(SERVICE)  # nothing was stored

    monkeypatch.setenv("INLOOP_WEBHOOK_ALLOW", f"{allow}, hooks.internal")
    reset_settings()
    assert create_service(SERVICE, policy, created_by="ana", reason="allowed").revision == 1
    refused_too = {**policy, "actions": [{"name": "other", "url": "http://172.16.9.9/x"}]}
    with pytest.raises(PolicyError, match=r"'other' may not post to 172.16.9.9"):
        set_policy(SERVICE, refused_too, by="ana", reason="another")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_destination_no_longer_allowed_is_refused_at_delivery_without_connecting(
    receiver: Receiver,
    service_id: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    host: str,
) -> None:
    monkeypatch.setenv("INLOOP_WEBHOOK_ALLOW", "127.0.0.0/8,::1")
    reset_settings()
    action = hook(receiver.url.replace("127.0.0.1", host))
    sid = service_id(action)  # allowed when written
    forbid_private(monkeypatch)  # then not (as when a name comes to resolve elsewhere)
    with (
        caplog.at_level(logging.WARNING, logger="inloop.serve.actions"),
        ActionDispatcher(backoff_s=0.01) as dispatcher,
    ):
        (delivery_id,) = send(dispatcher, sid, action)
        done = settled(delivery_id)
    assert (done.status, done.attempts, done.response_status) == ("refused", 1, None)
    assert done.error is not None and "is a loopback address" in done.error
    if host == "localhost":
        assert "localhost resolves to " in done.error
    else:
        assert "127.0.0.1 is a loopback address" in done.error
    assert receiver.calls == []  # nothing was sent
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_a_deliverys_dict_masks_its_url(receiver: Receiver, service_id: Callable[..., int]) -> None:
    action = hook(receiver.url + "/T0K3N?key=s3cr3t")
    sid = service_id(action)
    stopped = ActionDispatcher()
    send(stopped, sid, action)
    stopped.stop()
    (delivery,) = list_deliveries(SERVICE)
    assert delivery.url == action.url  # the Python face reads the database as it is
    shown = delivery.to_dict()
    assert shown["url"] == receiver.url.rsplit("/", 1)[0] + "/***"
    assert "T0K3N" not in str(shown) and "s3cr3t" not in str(shown)


def test_a_host_name_is_connected_to_at_the_address_that_was_checked(
    receiver: Receiver, service_id: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)[0][4][0]
    if first != "127.0.0.1":
        pytest.skip(f"localhost resolves to {first} first; the receiver listens on 127.0.0.1")
    monkeypatch.setenv("INLOOP_WEBHOOK_ALLOW", "127.0.0.0/8,::1")  # addresses, not the name
    reset_settings()
    action = hook(receiver.url.replace("127.0.0.1", "localhost"))
    sid = service_id(action)
    with ActionDispatcher(backoff_s=0.01) as dispatcher:
        (delivery_id,) = send(dispatcher, sid, action)
        assert settled(delivery_id).status == "delivered"
    ((headers, _),) = receiver.calls
    port = receiver.url.split(":")[2].split("/")[0]
    assert headers["host"] == f"localhost:{port}"  # the receiver still sees the name
