"""The pages in a real browser: Debian's Chromium, driven by Playwright, on a real uvicorn server.

Each test starts ``inloop.web.app:create_app`` under uvicorn in a subprocess on a
free loopback port, on its own database (SQLite and PostgreSQL), with a project
and users made through the library; the browser signs in through the login
page and works by keyboard only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import pytest

from inloop.label import (
    LabelClass,
    Project,
    add_items,
    annotate,
    create_project,
    current_labels,
    history,
)
from inloop.label.review import queue_disagreements
from inloop.store.db import get_engine
from inloop.web.access import add_member
from inloop.web.auth import create_user
from inloop.web.pages import class_keys

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PROJECT = "pets"
# The 64-feature item shows as an 8x8 grid; priorities fix the queue order.
DIGIT = [0, 0, 5, 13, 9, 1, 0, 0] * 8
ITEMS = [
    {"external_id": "grid", "features": DIGIT, "priority": 100},
    *({"external_id": f"t{i}", "text": f"animal number {i}", "priority": 50 - i} for i in range(7)),
]
TIMEOUT_MS = 10_000

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - a dev dependency
    sync_playwright = None


@dataclass
class Server:
    url: str
    db_url: str
    annotator_token: str
    reviewer_token: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_up(url: str, process: subprocess.Popen[bytes], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{out}")
        try:
            with urllib.request.urlopen(url + "/login", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"uvicorn did not answer at {url} within {seconds} s")


@pytest.fixture(scope="module")
def browser(missing_service: Callable[[str], NoReturn]) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        missing_service(f"the browser tests need Debian's Chromium at {CHROMIUM} (make test)")
    if sync_playwright is None:
        missing_service(
            "the browser tests need the Python package playwright (pip install -e .[dev])"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def server(db_url: str, inloop_home: Path) -> Iterator[Server]:
    engine = get_engine(db_url)
    create_project(
        PROJECT,
        ["cat", "dog", {"name": "bird", "key": "b"}],
        instructions="Which animal is it?",
        engine=engine,
    )
    add_items(PROJECT, ITEMS, engine=engine)
    annotator = create_user("ana", "annotator", engine=engine)
    reviewer = create_user("rita", "reviewer", engine=engine)
    for member in ("ana", "rita"):
        add_member(PROJECT, member, added_by="test", engine=engine)
    port = _free_port()
    env = {**os.environ, "INLOOP_DB_URL": db_url, "INLOOP_HOME": str(inloop_home)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "inloop.web.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, process)
        yield Server(url, db_url, annotator, reviewer)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def _sign_in(page: Page, server: Server, path: str, token: str) -> None:
    page.goto(server.url + path)
    assert "/login" in page.url, "a page without a session must send the browser to /login"
    page.fill("#token", token)
    page.press("#token", "Enter")
    page.wait_for_url(server.url + path)


def _shown(page: Page) -> str:
    """The external id of the item on screen, once one is."""
    page.wait_for_selector("#item[data-item-id]:not([data-item-id=''])")
    return page.inner_text("#item .external-id")


def _settled(page: Page) -> None:
    """Wait until every answer the page sent has been stored."""
    page.wait_for_selector("body[data-pending='0']")


def _labels(server: Server) -> dict[str, str]:
    labels = current_labels(PROJECT, engine=get_engine(server.db_url))
    return {c.external_id: c.label for c in labels.values()}


def test_label_by_keyboard_skip_undo_and_csrf(page: Page, server: Server) -> None:
    _sign_in(page, server, f"/projects/{PROJECT}/label", server.annotator_token)
    assert page.inner_text("#who").startswith("ana")
    # The highest-priority item is the 64-feature one: an 8x8 grey grid.
    assert _shown(page) == "grid"
    assert page.locator("#item .grid8 .px").count() == 64
    assert page.is_hidden("#note"), "an item without a note shows no note box"
    # Class keys: default 1, 2 by position, and the project's own "b".
    assert page.inner_text(".class-btn[data-label='bird'] kbd") == "b"

    given: dict[str, str] = {}
    for key, label in [("1", "cat"), ("2", "dog"), ("b", "bird")]:
        before = _shown(page)
        page.keyboard.press(key)
        page.wait_for_function(
            "before => document.querySelector('#item .external-id')?.textContent !== before",
            arg=before,
        )
        given[before] = label
    assert list(given) == ["grid", "t0", "t1"]
    _settled(page)
    page.wait_for_function("() => document.getElementById('progress').dataset.complete === '3'")
    assert page.inner_text("#progress") == "3 / 8"
    assert page.inner_text("#session-count") == "3"
    assert float(page.inner_text("#throughput")) > 0, "labels per minute this session"
    assert _labels(server) == given

    # Skip with "s" and with Space: no label, the queue moves on.
    skipped = [_shown(page)]
    page.keyboard.press("s")
    page.wait_for_function(
        "id => (document.querySelector('#item .external-id')?.textContent ?? id) !== id",
        arg=skipped[0],
    )
    skipped.append(_shown(page))
    page.keyboard.press(" ")
    page.wait_for_function(
        "id => (document.querySelector('#item .external-id')?.textContent ?? id) !== id",
        arg=skipped[1],
    )
    assert skipped == ["t2", "t3"]
    _settled(page)
    assert _labels(server) == given

    # Label t4 as cat, then undo with "u": t4 comes back; answer dog instead.
    assert _shown(page) == "t4"
    page.keyboard.press("1")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 't5'"
    )
    page.keyboard.press("u")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 't4'"
    )
    page.keyboard.press("2")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 't5'"
    )
    # Backspace undoes too: t5 (labeled bird) comes back and becomes cat.
    page.keyboard.press("b")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 't6'"
    )
    page.keyboard.press("Backspace")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 't5'"
    )
    page.keyboard.press("1")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 't6'"
    )
    _settled(page)
    given.update({"t4": "dog", "t5": "cat"})
    assert _labels(server) == given
    engine = get_engine(server.db_url)
    t4 = [e.label for e in history("t4", project=PROJECT, engine=engine)]
    assert t4 == ["cat", "dog"], "undo keeps the earlier answer in the history"
    page.wait_for_function("() => document.getElementById('progress').dataset.complete === '5'")
    assert page.inner_text("#session-count") == "5"

    # The last item, then the queue is empty.
    page.keyboard.press("2")
    page.wait_for_selector("#empty")
    _settled(page)
    assert len(_labels(server)) == 6

    # A fetch without the CSRF header is refused; the same fetch with it works.
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json'}, body: '{"n": 1}'})).status""",
        f"/api/projects/{PROJECT}/next",
    )
    assert status == 403
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json',
                      'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
            body: '{"n": 1}'})).status""",
        f"/api/projects/{PROJECT}/next",
    )
    assert status == 200


def test_project_list_roles_and_review_by_keyboard(
    page: Page, browser: Browser, server: Server
) -> None:
    # An annotator: a wrong token is refused, the list shows no audit, review pages are closed.
    annotator = browser.new_context()
    annotator.set_default_timeout(TIMEOUT_MS)
    other = annotator.new_page()
    other.goto(server.url + "/login")
    other.fill("#token", "not-a-token")
    other.press("#token", "Enter")
    other.wait_for_selector("#login-error")
    _sign_in(other, server, "/", server.annotator_token)
    row = other.locator(f"tr[data-project='{PROJECT}']")
    assert "cat, dog, bird" in row.inner_text()
    assert row.locator("a", has_text="Audit").count() == 0, "annotators do not audit"
    response = other.goto(server.url + f"/projects/{PROJECT}/review")
    assert response is not None and response.status == 403
    assert "reviewer" in other.inner_text("#message")
    response = other.goto(server.url + "/projects/nope/label")
    assert response is not None and response.status == 404
    annotator.close()

    # A reviewer settles two disagreements: "k" keeps the majority, "b" changes to bird.
    engine = get_engine(server.db_url)
    votes = {"t0": ["cat", "dog", "dog"], "t1": ["bird", "cat", "cat"]}
    for external_id, labels in votes.items():
        for who, label in zip(["ann1", "ann2", "ann3"], labels, strict=True):
            annotate(PROJECT, external_id, who, label, engine=engine)
    reviews = queue_disagreements(PROJECT, engine=engine)
    assert len(reviews) == 2

    _sign_in(page, server, f"/projects/{PROJECT}/review", server.reviewer_token)
    first = _shown(page)
    assert page.inner_text("#given") in {"dog", "cat"}
    assert page.is_hidden("#note-row"), "items without a note show no note row"
    page.keyboard.press("k")  # the given label is fine
    page.wait_for_function(
        "id => (document.querySelector('#item .external-id')?.textContent ?? id) !== id", arg=first
    )
    second = _shown(page)
    assert {first, second} == set(votes)
    page.keyboard.press("b")  # change to bird
    page.wait_for_selector("#empty")
    _settled(page)
    majority = {"t0": "dog", "t1": "cat"}
    assert _labels(server) == {first: majority[first], second: "bird"}
    assert page.inner_text("#session-count") == "2"

    # Reviewers see the audit and review links; the audit queue of this project is empty.
    page.goto(server.url + "/")
    assert page.locator(f"tr[data-project='{PROJECT}'] a", has_text="Audit").count() == 1
    page.goto(server.url + f"/projects/{PROJECT}/audit")
    page.wait_for_selector("#empty")
    assert "Nothing left" in page.inner_text("#empty")


_WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__csp.push(e.effectiveDirective + " " + (e.blockedURI || "inline")));
"""


def test_labeling_works_under_the_content_security_policy(page: Page, server: Server) -> None:
    page.add_init_script(_WATCH_CSP)
    form = page.goto(server.url + "/login")
    assert form is not None
    policy = form.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert form.headers["x-content-type-options"] == "nosniff"
    assert form.headers["referrer-policy"] == "same-origin"

    _sign_in(page, server, f"/projects/{PROJECT}/label", server.annotator_token)
    labeling = page.reload()
    assert labeling is not None and labeling.headers["content-security-policy"] == policy
    # The page's stylesheet, its scripts, and the grid's shades (set from script) all apply.
    assert _shown(page) == "grid"
    shade = "getComputedStyle(document.querySelector('#item .grid8 .px[data-index=\"3\"]'))"
    assert page.evaluate(f"{shade}.backgroundColor") not in ("", "rgba(0, 0, 0, 0)")
    assert page.evaluate("getComputedStyle(document.querySelector('#item .grid8')).display") == (
        "grid"
    )
    page.keyboard.press("1")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 't0'"
    )
    _settled(page)
    assert _labels(server) == {"grid": "cat"}
    assert page.evaluate("window.__csp") == [], "the page itself breaks none of its policy"

    # The policy is enforced: a script injected into the page does not run.
    ran = page.evaluate(
        """() => { const s = document.createElement("script");
        s.textContent = "window.__ran = true"; document.head.appendChild(s);
        return window.__ran === true; }"""
    )
    assert ran is False
    page.wait_for_function("() => window.__csp.length > 0")
    assert page.evaluate("window.__csp")[0].startswith("script-src")


def _project(classes: list[LabelClass]) -> Project:
    return Project(1, "p", "single_label", tuple(classes), "", 1, 600, datetime.now(UTC), "ana")


def test_class_keys_defaults() -> None:
    digits = _project([LabelClass(str(d)) for d in range(10)])
    assert [c.key for c in class_keys(digits)] == [str(d) for d in range(10)]
    words = _project([LabelClass(n) for n in ["cat", "dog", "bird"]])
    assert [c.key for c in class_keys(words)] == ["1", "2", "3"]
    # A project's own keys win; positional defaults skip the keys it took.
    mixed = _project([LabelClass("cat", "2"), LabelClass("dog"), LabelClass("s")])
    assert [c.key for c in class_keys(mixed)] == ["2", "1", "3"]
    many = _project([LabelClass(f"c{i}") for i in range(12)])
    assert [c.key for c in class_keys(many)][-3:] == ["0", None, None]


def test_multi_label_by_toggling_keys_and_enter(page: Page, server: Server) -> None:
    engine = get_engine(server.db_url)
    create_project(
        "tags",
        [{"name": "urgent", "key": "g"}, "billing", "bug"],
        task_type="multi_label",
        engine=engine,
    )
    add_items(
        "tags",
        [{"external_id": f"m{i}", "text": f"ticket {i}", "priority": 10 - i} for i in range(3)],
        engine=engine,
    )
    add_member("tags", "ana", added_by="test", engine=engine)
    _sign_in(page, server, "/projects/tags/label", server.annotator_token)
    assert _shown(page) == "m0"
    assert page.is_visible("#submit")
    # Keys toggle (billing 1 and bug 2 by position, urgent its own "g"); Enter submits.
    for key in ("1", "2", "2", "g"):
        page.keyboard.press(key)
    assert page.get_attribute(".class-btn[data-label='urgent']", "aria-pressed") == "true"
    assert page.get_attribute(".class-btn[data-label='billing']", "aria-pressed") == "true"
    assert page.get_attribute(".class-btn[data-label='bug']", "aria-pressed") == "false"
    assert _shown(page) == "m0", "toggling a class does not answer"
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 'm1'"
    )
    assert page.locator(".class-btn.on").count() == 0, "the next item starts with none chosen"
    _settled(page)
    labels = current_labels("tags", engine=engine)
    assert {c.external_id: c.labels for c in labels.values()} == {"m0": ("billing", "urgent")}

    # Undo with "u" gives m0 back; answer it again with bug only.
    page.keyboard.press("u")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 'm0'"
    )
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 'm1'"
    )
    page.keyboard.press("Enter")  # nothing chosen: none of them apply
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 'm2'"
    )
    page.keyboard.press("s")
    _settled(page)
    labels = current_labels("tags", engine=engine)
    assert {c.external_id: c.labels for c in labels.values()} == {"m0": ("bug",), "m1": ()}
    assert [a.labels for a in history("m0", project="tags", engine=engine)] == [
        ("billing", "urgent"),
        ("bug",),
    ]
    assert [a.skipped for a in history("m2", project="tags", engine=engine)] == [True]


def test_item_note_shows_why_the_item_is_queued(
    page: Page, browser: Browser, server: Server
) -> None:
    engine = get_engine(server.db_url)
    create_project("routed", ["cat", "dog"], engine=engine)
    why = "margin 0.04 < 0.20 (champion pets@3); <b>pets@2</b> (canary) says dog"
    add_items(
        "routed",
        [
            {"external_id": "why", "text": "a furry thing", "note": why, "priority": 2},
            {"external_id": "plain", "text": "another furry thing", "priority": 1},
        ],
        engine=engine,
    )
    for member in ("ana", "rita"):
        add_member("routed", member, added_by="test", engine=engine)
    _sign_in(page, server, "/projects/routed/label", server.annotator_token)
    assert _shown(page) == "why"
    assert page.is_visible("#note")
    assert page.inner_text("#note").startswith("Why this item:")
    assert page.inner_text("#note-text") == why
    assert page.locator("#note b").count() == 0, "the note is text, never markup"

    # The next item has no note: the box goes; undo brings the item and its note back.
    page.keyboard.press("1")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 'plain'"
    )
    assert page.is_hidden("#note")
    page.keyboard.press("u")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 'why'"
    )
    assert page.is_visible("#note") and page.inner_text("#note-text") == why
    page.keyboard.press("2")
    page.wait_for_function(
        "() => document.querySelector('#item .external-id')?.textContent === 'plain'"
    )
    page.keyboard.press("1")
    page.wait_for_selector("#empty")
    assert page.is_hidden("#note")
    _settled(page)
    labels = current_labels("routed", engine=engine)
    assert {c.external_id: c.label for c in labels.values()} == {"why": "dog", "plain": "cat"}

    # The review page shows the note beside the review's own reason.
    for who, label in (("ann1", "cat"), ("ann2", "cat")):
        annotate("routed", "why", who, label, engine=engine)
    assert len(queue_disagreements("routed", engine=engine)) == 1
    reviewer = browser.new_context()
    reviewer.set_default_timeout(TIMEOUT_MS)
    review = reviewer.new_page()
    _sign_in(review, server, "/projects/routed/review", server.reviewer_token)
    assert _shown(review) == "why"
    assert review.is_visible("#note-row") and review.inner_text("#item-note") == why
    reviewer.close()
