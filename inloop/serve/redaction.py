"""The secrets in a policy, and how they show: write-only, masked wherever a policy is shown.

A service's webhook actions carry secrets: header values (``Authorization``,
API keys) and tokens in URLs (a Slack hook's path, a ``?token=`` query).
Anyone who may read a service (every role) sees its policy, so the API, the
CLI and the logs show these masked, and only their presence shows:

- every header value shows as :data:`MASK`; the header names show;
- a URL keeps its scheme, host and port; anything after them (path, query,
  fragment) shows as ``/***``, and a ``user:password@`` in it is dropped.

The dispatcher reads the real values from the database. A policy written from
a masked view (the JSON of ``GET /v1/services/{name}`` with one field changed)
keeps the stored secrets: :func:`unmask_actions` puts back, by action name,
the stored value of every masked one.

>>> mask_url("https://hooks.slack.com/services/T0/B0/XyZ")
'https://hooks.slack.com/***'
>>> mask_url("https://bob:pw@example.org:8443")
'https://example.org:8443/***'
>>> mask_url("https://example.org/")
'https://example.org/'
>>> mask_headers({"Authorization": "Bearer t0k3n"})
{'Authorization': '***'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

__all__ = ["MASK", "is_masked_url", "mask_headers", "mask_policy", "mask_url", "unmask_actions"]

#: What a secret shows as.
MASK = "***"


def _host_port(url: str) -> tuple[str, str] | None:
    """``(scheme, host[:port])`` of ``url``, without user or password; None if unparsable."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    shown = f"[{host}]" if ":" in host else host
    return parts.scheme, shown if port is None else f"{shown}:{port}"


def mask_url(url: str) -> str:
    """``url`` with everything but its scheme, host and port masked (unchanged if that is all).

    >>> mask_url("http://10.0.0.5:8080/hook?token=abc")
    'http://10.0.0.5:8080/***'
    >>> mask_url("not a url")
    '***'
    """
    found = _host_port(url)
    if found is None:
        return MASK
    scheme, host = found
    bare = f"{scheme}://{host}"
    if url in (bare, bare + "/"):
        return url
    return f"{bare}/{MASK}"


def is_masked_url(url: str) -> bool:
    """Whether ``url`` is a mask (as :func:`mask_url` writes one), not a real URL."""
    return url == MASK or url.endswith(f"/{MASK}")


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Every header with its value masked: which headers are set shows, not their values."""
    return {name: MASK for name in headers}


def mask_policy(body: Mapping[str, Any]) -> dict[str, Any]:
    """A policy's JSON (``Policy.model_dump(mode="json")``) with every secret masked.

    >>> mask_policy({"champion": "a@1", "actions": [
    ...     {"name": "n", "url": "https://x.io/t0k3n", "headers": {"X-Key": "k"}}]})["actions"]
    [{'name': 'n', 'url': 'https://x.io/***', 'headers': {'X-Key': '***'}}]
    """
    out = dict(body)
    actions = out.get("actions")
    if actions:
        out["actions"] = [
            {
                **action,
                "url": mask_url(action["url"]),
                "headers": mask_headers(action.get("headers") or {}),
            }
            for action in actions
        ]
    return out


def unmask_actions(
    actions: Sequence[Mapping[str, Any]], stored: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``actions`` with each masked URL or header value replaced by the stored one.

    ``stored`` are the actions of the policy being replaced, as JSON; a masked
    value takes the value of the stored action of the same name, if the mask
    is of that value. Raises ValueError naming the action and the field when
    a masked value has no stored value to stand for.

    >>> stored = [{"name": "a", "url": "https://x.io/t0k3n", "headers": {"Auth": "s3cr3t"}}]
    >>> unmask_actions([{"name": "a", "url": "https://x.io/***", "headers": {"Auth": "***"}}],
    ...                stored)
    [{'name': 'a', 'url': 'https://x.io/t0k3n', 'headers': {'Auth': 's3cr3t'}}]
    """
    by_name = {a["name"]: a for a in stored}
    out = []
    for action in actions:
        old = by_name.get(action.get("name"))
        new = dict(action)
        url = new.get("url")
        if isinstance(url, str) and is_masked_url(url):
            if old is None or mask_url(old["url"]) != url:
                raise ValueError(
                    f"the url of action {action.get('name')!r} is masked ({url!r}) and the "
                    "current policy has no such action with that host to keep it from; "
                    "give the full URL"
                )
            new["url"] = old["url"]
        headers = new.get("headers")
        if isinstance(headers, Mapping):
            old_headers = {} if old is None else dict(old.get("headers") or {})
            kept = {}
            for name, value in headers.items():
                if value == MASK:
                    if name not in old_headers:
                        raise ValueError(
                            f"the header {name!r} of action {action.get('name')!r} is masked "
                            f"({MASK!r}) and the current policy has no value for it; give "
                            "the real value"
                        )
                    value = old_headers[name]
                kept[name] = value
            new["headers"] = kept
        out.append(new)
    return out
