"""Where webhooks may go: public addresses, and the private ones an allow-list names.

A webhook is a request the server makes to a URL someone wrote into a
policy. Left alone, that lets whoever may write a policy make the server call
what only it can reach: its own admin ports on loopback, a cloud's metadata
service (link-local ``169.254.169.254``), the databases on the private
network. So a webhook may only reach a public address, unless the
``INLOOP_WEBHOOK_ALLOW`` setting names the address, a network holding it or
the host name (such as ``127.0.0.1``, ``10.0.0.0/8`` or ``hooks.internal``).

The check runs twice: when a policy is written (:func:`check_destination`:
a clear error, nothing stored), and at every new connection, against the
addresses the host name resolves to then (DNS may have changed): the
connection goes to the address that was checked (:class:`GuardedTransport`),
so a name cannot resolve to one address for the check and another for the
connection.

>>> allow = AllowList.parse(["10.0.0.0/8", "hooks.internal"])
>>> refusal("10.1.2.3", allow) is None, refusal("hooks.internal", allow) is None
(True, True)
>>> refusal("169.254.169.254", AllowList())
'169.254.169.254 is a link-local address'
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from inloop.serve.models import ServeError

__all__ = [
    "AllowList",
    "DestinationRefusedError",
    "GuardedTransport",
    "check_destination",
    "check_destinations",
    "refusal",
]

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_HINT = (
    "webhooks may not reach loopback, link-local or private addresses unless "
    "INLOOP_WEBHOOK_ALLOW names them (an address, a network such as 10.0.0.0/8, or a "
    "host name; comma-separated)"
)


class DestinationRefusedError(ServeError):
    """A webhook's URL leads to an address webhooks may not reach; nothing was sent."""


@dataclass(frozen=True)
class AllowList:
    """The private addresses, networks and host names webhooks may reach anyway."""

    networks: tuple[_Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """An allow-list of entries such as '127.0.0.1', '10.0.0.0/8' or 'hooks.internal'.

        >>> AllowList.parse(["::1", "Hooks.Internal"]).hosts
        frozenset({'hooks.internal'})
        """
        networks: list[_Network] = []
        hosts: set[str] = set()
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    @classmethod
    def from_settings(cls) -> AllowList:
        """The allow-list of the ``webhook_allow`` setting (``INLOOP_WEBHOOK_ALLOW``)."""
        from inloop.settings import get_settings

        return cls.parse(get_settings().webhook_allow)

    def allows(self, address: _Address) -> bool:
        return any(address in network for network in self.networks)


def _address(host: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return address


def _kind(address: _Address) -> str | None:
    """What makes ``address`` off limits ('loopback', 'private', ...), or None if public."""
    if address.is_global and not address.is_multicast:
        return None
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


def refusal(host: str, allow: AllowList, addresses: Iterable[str] = ()) -> str | None:
    """Why ``host`` (with the ``addresses`` it resolved to) is off limits, or None.

    A host name the allow-list names is allowed whatever it resolves to.
    """
    name = host.lower().strip("[]").rstrip(".")
    if name in allow.hosts:
        return None
    for candidate in (host, *addresses):
        address = _address(candidate)
        if address is None or allow.allows(address):
            continue
        kind = _kind(address)
        if kind is not None:
            via = "" if _address(host) is not None else f"{host} resolves to "
            return f"{via}{address} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} address"
    return None


def _resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order (a literal: itself)."""
    if _address(host) is not None:
        return [host.strip("[]")]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_destination(action: str, url: str, allow: AllowList | None = None) -> None:
    """Raise :class:`DestinationRefusedError` if action ``action``'s ``url`` leads off limits.

    A host name that does not resolve now is let through: the check at
    delivery time decides then.

    >>> check_destination("alert", "http://127.0.0.1:9/hook", AllowList())
    Traceback (most recent call last):
    ...
    inloop.serve.destinations.DestinationRefusedError: Action 'alert' may not post to 127.0.0.1: ...
    """
    allow = allow if allow is not None else AllowList.from_settings()
    parsed = httpx.URL(url)
    host = parsed.host
    try:
        addresses = _resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
    except OSError:
        addresses = []
    why = refusal(host, allow, addresses)
    if why is not None:
        raise DestinationRefusedError(
            f"Action {action!r} may not post to {host}: {why}, and {_HINT}. Use a public "
            f"URL, or add {host} to INLOOP_WEBHOOK_ALLOW if the server should reach it."
        )


def check_destinations(actions: Iterable[tuple[str, str]], allow: AllowList | None = None) -> None:
    """:func:`check_destination` for each ``(action, url)``, with the allow-list of the settings."""
    allow = allow if allow is not None else AllowList.from_settings()
    for action, url in actions:
        check_destination(action, url, allow)


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport that connects only where webhooks may go.

    Each request's host is resolved here and every address checked; the
    request then goes to the first address (the ``Host`` header and the TLS
    server name stay the host's), so no second lookup can lead elsewhere. A
    refused destination raises :class:`DestinationRefusedError` before any
    connection is made. Proxy variables of the environment are not used:
    webhooks go out directly.
    """

    def __init__(self, allow: AllowList, **options: Any) -> None:
        self.allow = allow
        self._inner = httpx.HTTPTransport(**options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            addresses = _resolve(host, port)
        except OSError as exc:
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from exc
        why = refusal(host, self.allow, addresses)
        if why is not None:
            raise DestinationRefusedError(f"Refused: {why}, and {_HINT}. Nothing was sent.")
        if _address(host) is None and host.lower().rstrip(".") not in self.allow.hosts:
            request.url = request.url.copy_with(host=addresses[0])
            request.extensions = {**request.extensions, "sni_hostname": host}
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()
