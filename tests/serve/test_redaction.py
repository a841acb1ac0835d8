"""What of a policy is secret, and how it shows: masked URLs and headers, kept on write."""

from __future__ import annotations

import pytest

from inloop.serve.redaction import MASK, is_masked_url, mask_policy, mask_url, unmask_actions


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/secret", "https://hooks.slack.com/***"),
        ("https://example.org/hook?token=secret#frag", "https://example.org/***"),
        ("https://example.org?token=secret", "https://example.org/***"),
        ("https://user:secret@example.org", "https://example.org/***"),
        ("http://[2001:db8::1]:8080/secret", "http://[2001:db8::1]:8080/***"),
        ("https://example.org", "https://example.org"),
        ("https://example.org/", "https://example.org/"),
        ("http://[::1", MASK),
    ],
)
def test_a_url_shows_its_scheme_host_and_port_only(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert is_masked_url(shown) == (shown != url)


def test_a_policy_shows_which_headers_are_set_not_their_values() -> None:
    body = {
        "champion": "m@1",
        "actions": [{"name": "a", "url": "https://x.io/k", "headers": {"Authorization": "t"}}],
    }
    assert mask_policy(body)["actions"] == [
        {"name": "a", "url": "https://x.io/***", "headers": {"Authorization": MASK}}
    ]
    assert body["actions"][0]["headers"] == {"Authorization": "t"}  # the input is untouched
    assert mask_policy({"champion": "m@1"}) == {"champion": "m@1"}


def test_masked_values_take_the_stored_ones_and_a_mask_with_none_behind_it_is_refused() -> None:
    stored = [{"name": "a", "url": "https://x.io/k", "headers": {"Auth": "s", "X": "1"}}]
    edited = [{"name": "a", "url": "https://x.io/***", "headers": {"Auth": MASK, "X": "2"}}]
    assert unmask_actions(edited, stored) == [
        {"name": "a", "url": "https://x.io/k", "headers": {"Auth": "s", "X": "2"}}
    ]
    # A new URL is taken as given; a masked one on another host has nothing behind it.
    assert unmask_actions([{"name": "a", "url": "https://y.io/n"}], stored)[0]["url"] == (
        "https://y.io/n"
    )
    with pytest.raises(ValueError, match=r"url of action 'a' is masked \('https://y.io/\*\*\*'\)"):
        unmask_actions([{"name": "a", "url": "https://y.io/***"}], stored)
    with pytest.raises(ValueError, match=r"header 'Auth' of action 'b' is masked"):
        unmask_actions([{"name": "b", "url": "https://x.io/k", "headers": {"Auth": MASK}}], stored)
