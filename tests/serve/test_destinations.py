"""Where webhooks may go: the address rules, the allow-list and the guarded transport."""

from __future__ import annotations

import socket

import httpx
import pytest

from inloop.serve.destinations import (
    AllowList,
    DestinationRefusedError,
    GuardedTransport,
    check_destination,
    refusal,
)


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("::1", "::1 is a loopback address"),
        ("169.254.169.254", "169.254.169.254 is a link-local address"),
        ("fe80::1", "fe80::1 is a link-local address"),
        ("10.0.0.1", "10.0.0.1 is a private address"),
        ("fd00::1", "fd00::1 is a private address"),
        ("::ffff:10.0.0.1", "10.0.0.1 is a private address"),
        ("0.0.0.0", "0.0.0.0 is an unspecified address"),
        ("100.64.0.1", "100.64.0.1 is a non-public address"),
        ("224.0.0.1", "224.0.0.1 is a multicast address"),
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_only_public_addresses_are_allowed_by_default(host: str, why: str | None) -> None:
    assert refusal(host, AllowList()) == why


def test_the_allow_list_names_addresses_networks_and_host_names() -> None:
    allow = AllowList.parse([" 10.0.0.0/8", "127.0.0.1", "Hooks.Internal.", ""])
    assert refusal("10.20.30.40", allow) is None and refusal("127.0.0.1", allow) is None
    assert refusal("127.0.0.2", allow) == "127.0.0.2 is a loopback address"
    # A name the list holds is allowed whatever it resolves to; another is judged by its addresses.
    assert refusal("hooks.internal", allow, ["192.168.1.1"]) is None
    assert refusal("evil.example", allow, ["8.8.8.8", "192.168.1.1"]) == (
        "evil.example resolves to 192.168.1.1 is a private address"
    )


def test_a_refused_destination_is_not_connected_to() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        with pytest.raises(DestinationRefusedError, match=r"Action 'a' may not post to 127\.0"):
            check_destination("a", f"http://127.0.0.1:{port}/", AllowList())
        with (
            httpx.Client(transport=GuardedTransport(AllowList())) as client,
            pytest.raises(DestinationRefusedError, match=r"127\.0\.0\.1 is a loopback address"),
        ):
            client.post(f"http://127.0.0.1:{port}/hook", json={})
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
