"""The pages people use in a browser: sign in, the project list, labeling, audit and review.

Server-rendered Jinja2 templates (``inloop/web/templates``) with small
hand-written scripts (``inloop/web/static``) that call the REST API with the
session cookie and the CSRF token each page embeds. A page asked for without a
live session redirects to ``/login?next=<the page>`` (:mod:`inloop.web.signin`)::

    from fastapi import FastAPI
    from inloop.web.pages import router

    app = FastAPI()
    app.include_router(router)  # GET /, /projects/{name}/label|audit|review
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from inloop.errors import quote as quote_value
from inloop.label.projects import LabelNotFoundError, Project, get_project
from inloop.store.text import printable
from inloop.web.access import may_see, visible_projects
from inloop.web.auth import SESSION_COOKIE, User, request_engine, session_user

__all__ = ["PREFETCH", "RESERVED_KEYS", "PageClass", "class_keys", "router"]

#: How many leases the labeling page keeps ready behind the item on screen.
PREFETCH = 3
#: Keys the pages use for themselves (skip, undo, keep); a project's own class key wins.
RESERVED_KEYS = frozenset({"s", "u", "k", " "})

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
# Text stored before lone surrogates were refused renders escaped, not as a 500.
TEMPLATES.env.finalize = printable

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class PageClass:
    """A class as the page shows it: its name and the key that picks it (or None)."""

    name: str
    key: str | None

    @property
    def key_label(self) -> str:
        """How the key is printed on its button."""
        return "Space" if self.key == " " else (self.key or "")


def class_keys(project: Project) -> list[PageClass]:
    """The project's classes with the key each one gets on the pages.

    A key set on the project wins. Classes without one get a default: the class
    name itself when every class name is one distinct character other than the
    page's own keys (digits "0".."9" are typed as themselves), else 1..9 then 0
    by position; classes past the tenth get none (click their button).

    >>> from datetime import UTC, datetime
    >>> from inloop.label import LabelClass
    >>> p = Project(1, "p", "single_label", (LabelClass("cat"), LabelClass("dog", "d")), "",
    ...             1, 600, datetime.now(UTC), "ana")
    >>> [(c.name, c.key) for c in class_keys(p)]
    [('cat', '1'), ('dog', 'd')]
    """
    names = [c.name for c in project.classes]
    taken = {c.key for c in project.classes if c.key}
    as_names = (
        len(set(names)) == len(names)
        and all(len(n) == 1 and n.lower() not in RESERVED_KEYS for n in names)
        and not any(n in taken and c.key != n for c, n in zip(project.classes, names, strict=True))
    )
    positional = [str(d) for d in (*range(1, 10), 0) if str(d) not in taken]
    result: list[PageClass] = []
    for c in project.classes:
        if c.key:
            key: str | None = c.key
        elif as_names:
            key = c.name
        else:
            key = positional.pop(0) if positional else None
        result.append(PageClass(c.name, key))
    return result


async def _page_user(request: Request) -> tuple[User, str] | None:
    """The signed-in user of this browser and the session's CSRF token, or None."""
    session = request.cookies.get(SESSION_COOKIE)
    if not session:
        return None
    return await run_in_threadpool(session_user, session, engine=request_engine(request))


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


def _render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


async def _project(request: Request, name: str, user: User) -> Project | None:
    """The project, or None when it is missing or ``user`` may not see it.

    Both get the same 404 page, so that someone outside a project cannot learn
    that a project of that name exists (see :mod:`inloop.web.access`).
    """
    engine = request_engine(request)
    if not await run_in_threadpool(may_see, user, name, engine=engine):
        return None
    try:
        return await run_in_threadpool(get_project, name, engine=engine)
    except LabelNotFoundError:
        return None


def _not_found(request: Request, user: User, csrf: str, name: str) -> HTMLResponse:
    return _render(
        request,
        "message.html",
        {
            "user": user,
            "csrf_token": csrf,
            "heading": "No such project",
            "message": f"There is no labeling project named {quote_value(name)}. "
            "Pick one from the project list.",
        },
        status_code=404,
    )


@router.get("/", response_class=HTMLResponse)
async def projects_page(request: Request) -> Response:
    """The labeling projects, with links to label (and, for reviewers, audit and review)."""
    found = await _page_user(request)
    if found is None:
        return _to_login(request)
    user, csrf = found
    projects = await run_in_threadpool(visible_projects, user, engine=request_engine(request))
    rows = [
        {
            "name": p.name,
            "classes": list(p.class_names),
            "overlap": p.overlap,
            "instructions": p.instructions,
        }
        for p in projects
    ]
    return _render(
        request,
        "projects.html",
        {"user": user, "csrf_token": csrf, "projects": rows, "can_review": user.can("reviewer")},
    )


@router.get("/projects/{name}/label", response_class=HTMLResponse)
async def label_page(request: Request, name: str) -> Response:
    """Label one item at a time by keyboard; the next items are fetched ahead."""
    found = await _page_user(request)
    if found is None:
        return _to_login(request)
    user, csrf = found
    project = await _project(request, name, user)
    if project is None:
        return _not_found(request, user, csrf, name)
    classes = class_keys(project)
    config = {
        "project": project.name,
        "classes": [{"name": c.name, "key": c.key} for c in classes],
        "multi": project.task_type == "multi_label",
        "prefetch": PREFETCH,
        "user": user.name,
    }
    return _render(
        request,
        "label.html",
        {
            "user": user,
            "csrf_token": csrf,
            "project": project,
            "classes": classes,
            "config": config,
        },
    )


_REVIEW_KINDS = {
    "audit": (
        "Audit",
        "Labels the audit found suspicious, most suspicious first. Keep the label if it is "
        "right, or press the key of the right class.",
    ),
    "disagreement": (
        "Review",
        "Items whose annotators disagree. Keep the current label, or press the key of the "
        "right class: your decision is final.",
    ),
}


async def _review_page(request: Request, name: str, kind: str) -> Response:
    found = await _page_user(request)
    if found is None:
        return _to_login(request)
    user, csrf = found
    project = await _project(request, name, user)
    if project is None:
        return _not_found(request, user, csrf, name)
    heading, explanation = _REVIEW_KINDS[kind]
    if not user.can("reviewer"):
        return _render(
            request,
            "message.html",
            {
                "user": user,
                "csrf_token": csrf,
                "heading": f"{heading} needs a reviewer",
                "message": f"The {heading.lower()} page needs the role 'reviewer' or higher; "
                f"user {user.name!r} has the role {user.role!r}. Ask an admin to change it.",
            },
            status_code=403,
        )
    classes = class_keys(project)
    config = {
        "project": project.name,
        "kind": kind,
        "classes": [{"name": c.name, "key": c.key} for c in classes],
        "user": user.name,
    }
    return _render(
        request,
        "review.html",
        {
            "user": user,
            "csrf_token": csrf,
            "project": project,
            "classes": classes,
            "config": config,
            "heading": heading,
            "explanation": explanation,
        },
    )


@router.get("/projects/{name}/audit", response_class=HTMLResponse)
async def audit_page(request: Request, name: str) -> Response:
    """Go through the audit's suspicious labels: keep each or change it, one key each."""
    return await _review_page(request, name, "audit")


@router.get("/projects/{name}/review", response_class=HTMLResponse)
async def review_page(request: Request, name: str) -> Response:
    """Settle the items annotators disagree on: keep or change, one key each."""
    return await _review_page(request, name, "disagreement")
