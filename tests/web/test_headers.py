"""Security headers (inloop/web/headers.py) and pages that keep to their policy."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from inloop.web.auth import create_user
from inloop.web.headers import CONTENT_SECURITY_POLICY

TEMPLATES = Path(__file__).parents[2] / "inloop" / "web" / "templates"


def test_pages_api_and_errors_carry_the_security_headers(
    client: TestClient, engine: Engine
) -> None:
    token = create_user("ana", "annotator", engine=engine)
    answers = [
        client.get("/login"),
        client.get("/", follow_redirects=False),
        client.get("/static/label.js"),
        client.get("/api/me", headers={"Authorization": f"Bearer {token}"}),
        client.get("/api/me"),  # 401
        client.get("/api/nope"),  # 404
    ]
    for answer in answers:
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
        assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    # The API docs load FastAPI's scripts from a CDN: they may not be framed, nothing more.
    docs = client.get("/docs")
    assert docs.headers["content-security-policy"] == "frame-ancestors 'none'"
    # The serving routes are for machines, on the hot path: no page headers there.
    served = client.get("/v1/services", headers={"Authorization": f"Bearer {token}"})
    assert "content-security-policy" not in served.headers


def test_templates_have_no_inline_script_style_or_handler() -> None:
    # What the policy forbids (script-src and style-src 'self'): the pages must not need it.
    for template in TEMPLATES.glob("*.html"):
        html = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, (template.name, tag)
        assert "<style" not in html, template.name
        assert not re.search(r"\sstyle=", html), template.name
        assert not re.search(r"\son[a-z]+=", html), template.name
        assert "javascript:" not in html, template.name
