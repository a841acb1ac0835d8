"""The REST API under ``/api``: thin routes over :mod:`inloop.label`.

Each route checks the caller's role, turns the request body (checked by
:mod:`inloop.web.schemas`) into one call of a labeling function that takes the
app's engine, and shapes the answer. Errors of those functions become 4xx
answers in :mod:`inloop.web.app`.

>>> router.prefix
'/api'
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from sqlalchemy import Engine, func, select

from inloop.errors import quote
from inloop.label import (
    LabelError,
    Lease,
    Project,
    active_leases,
    add_items,
    annotate,
    create_project,
    get_project,
    item_payload,
    next_items,
    queue_stats,
)
from inloop.label.annotations import current_query, derive_current
from inloop.label.items import _COLUMNS as _ITEM_COLUMNS
from inloop.label.items import Item
from inloop.label.tables import label_annotations, label_items
from inloop.store.text import INT32_MAX
from inloop.web import schemas as s
from inloop.web.access import add_member, require_project_access, visible_projects
from inloop.web.access import router as access_router
from inloop.web.auth import Principal, create_user, current_user, require
from inloop.web.auth import request_engine as _request_engine
from inloop.web.undo import undo_last

__all__ = ["ConflictError", "router"]

router = APIRouter(prefix="/api", tags=["api"])

DB = Annotated[Engine, Depends(_request_engine)]
Caller = Annotated[Principal, Depends(current_user)]
Reviewer = Annotated[Principal, Depends(require("reviewer"))]
Scientist = Annotated[Principal, Depends(require("scientist"))]
Admin = Annotated[Principal, Depends(require("admin"))]
# Routes under /projects/{name}/: a project the caller is not a member of answers 404
# (scientists and admins see every project); see inloop.web.access.
Member = Annotated[Principal, Depends(require_project_access())]
ReviewerMember = Annotated[Principal, Depends(require_project_access("reviewer"))]


class ConflictError(LabelError):
    """The request clashes with what exists (answered as 409)."""


def _project_out(project: Project) -> dict[str, Any]:
    return {
        "name": project.name,
        "task_type": project.task_type,
        "classes": [{"name": c.name, "key": c.key} for c in project.classes],
        "instructions": project.instructions,
        "overlap": project.overlap,
    }


def _item_out(item: Item) -> dict[str, Any]:
    return {
        "id": item.item_id,
        "external_id": item.external_id,
        "kind": item.kind,
        "payload": item_payload(item),
        "note": item.note,
        "count": item.count,
    }


def _lease_out(lease: Lease, db: Engine | None = None) -> dict[str, Any]:
    from inloop.web.learning import pool_for  # the model in the loop of the app on ``db``

    pool = pool_for(db) if db is not None else None
    suggested = pool.suggestion(lease.project_id, lease.item_id) if pool is not None else None
    return {
        "lease_id": lease.lease_id,
        "expires_at": lease.expires_at,
        "item": _item_out(lease.item),
        "suggestion": (
            None if suggested is None else {"label": suggested[0], "confidence": suggested[1]}
        ),
    }


@router.get("/me", response_model=s.UserOut)
def me(caller: Caller) -> dict[str, str]:
    """Who the token or session belongs to."""
    return {"name": caller.name, "role": caller.role}


@router.post("/users", status_code=201, response_model=s.UserCreated)
def post_user(body: s.UserRequest, caller: Admin, db: DB) -> dict[str, str]:
    """Create a user; the answer holds their token, shown only this once (stored hashed)."""
    token = create_user(body.name, body.role, created_by=caller.name, engine=db)
    return {"name": body.name, "role": body.role, "token": token}


@router.get("/projects", response_model=list[s.ProjectOut])
def get_projects(caller: Caller, db: DB) -> list[dict[str, Any]]:
    """The labeling projects the caller may see (annotators and reviewers: theirs), by name."""
    return [_project_out(p) for p in visible_projects(caller.user, engine=db)]


@router.post("/projects", status_code=201, response_model=s.ProjectOut)
def post_project(body: s.ProjectRequest, caller: Scientist, db: DB) -> dict[str, Any]:
    """Create a labeling project (scientist or admin)."""
    classes = [c if isinstance(c, str) else c.model_dump() for c in body.classes]
    try:
        project = create_project(
            body.name,
            classes,
            task_type=body.task_type,
            instructions=body.instructions,
            overlap=body.overlap,
            created_by=caller.name,
            engine=db,
        )
    except LabelError as exc:
        if _exists(body.name, db):
            raise ConflictError(str(exc)) from None
        raise
    add_member(project.name, caller.name, added_by=caller.name, engine=db)
    return _project_out(project)


def _exists(name: str, db: Engine) -> bool:
    try:
        get_project(name, engine=db)
    except LabelError:
        return False
    return True


@router.get("/projects/{name}", response_model=s.ProjectDetail)
def get_one_project(name: str, caller: Member, db: DB) -> dict[str, Any]:
    """A project and how far its queue is."""
    project = get_project(name, engine=db)
    stats = queue_stats(project, engine=db)
    return {**_project_out(project), "stats": asdict(stats)}


@router.post("/projects/{name}/items", status_code=201, response_model=s.ItemsCreated)
def post_items(name: str, body: s.ItemsRequest, caller: Scientist, db: DB) -> dict[str, Any]:
    """Import items (scientist or admin); all or nothing."""
    rows = [
        {**item.model_dump(), "external_id": str(item.external_id), "source": "import"}
        for item in body.items
    ]
    return {"item_ids": add_items(name, rows, engine=db)}


@router.get("/projects/{name}/items", response_model=s.ItemsPage)
def get_item_page(
    name: str,
    caller: Member,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
) -> dict[str, Any]:
    """One page of a project's items in id order, with their current labels."""
    project = get_project(name, engine=db)
    with db.connect() as conn:
        where = label_items.c.project_id == project.project_id
        total = conn.execute(select(func.count()).select_from(label_items).where(where))
        total_count = int(total.scalar_one())
        rows = conn.execute(
            select(*_ITEM_COLUMNS)
            .where(where)
            .order_by(label_items.c.item_id)
            .limit(limit)
            .offset(offset)
        ).all()
        items = [Item(*r) for r in rows]
        ids = [i.item_id for i in items]
        events = (
            conn.execute(current_query(project).where(label_annotations.c.item_id.in_(ids))).all()
            if ids
            else []
        )
    labels = derive_current(events)
    return {
        "items": [
            {
                **_item_out(i),
                "priority": i.priority,
                "current_label": labels[i.item_id].label if i.item_id in labels else None,
                "current_labels": _labels_out(labels[i.item_id].labels)
                if i.item_id in labels
                else None,
            }
            for i in items
        ],
        "total": total_count,
    }


@router.post("/projects/{name}/next", response_model=s.NextResponse)
def post_next(name: str, caller: Member, db: DB, body: s.NextRequest | None = None) -> Any:
    """Up to ``n`` leases: the ones the caller holds first, then new ones."""
    n = body.n if body is not None else 1
    held = active_leases(name, caller.name, engine=db)[:n]
    fresh = next_items(name, caller.name, n - len(held), engine=db) if len(held) < n else []
    return {"leases": [_lease_out(lease, db) for lease in held + fresh]}


@router.post("/projects/{name}/annotations", status_code=201, response_model=s.AnnotationCreated)
def post_annotation(name: str, body: s.AnnotationRequest, caller: Member, db: DB) -> Any:
    """Record the caller's answer for an item (``label`` null: skip); completes their lease.

    Multi-label projects take ``labels`` (a list of classes) instead of ``label``.
    """
    project = get_project(name, engine=db)
    multi = project.task_type == "multi_label"
    sent = "labels" if "labels" in body.model_fields_set else "label"
    if multi != (sent == "labels") and (body.label is not None or body.labels is not None):
        wanted = (
            "'labels': a list of class names ([] for none of them) or null to skip"
            if multi
            else "'label': one class name or null to skip"
        )
        raise HTTPException(
            status_code=422,
            detail=(
                f"Project {name!r} is {project.task_type.replace('_', '-')}: send {wanted}, "
                f"not {sent!r} = {quote(getattr(body, sent))}. Classes: "
                f"{list(project.class_names)}."
            ),
        )
    answer: Any = body.labels if multi else body.label
    event = annotate(project, body.item_id, caller.name, answer, seconds=body.seconds, engine=db)
    return {
        "id": event.annotation_id,
        "item_id": event.item_id,
        "label": event.label,
        "labels": _labels_out(event.labels),
        "created_at": event.created_at,
    }


def _labels_out(labels: tuple[str, ...] | None) -> list[str] | None:
    return None if labels is None else list(labels)


@router.post("/projects/{name}/undo", response_model=s.UndoResponse)
def post_undo(name: str, caller: Member, db: DB) -> Any:
    """Give the caller's last answered item back as a lease, to answer again (or null)."""
    lease = undo_last(name, caller.name, engine=db)
    return {"lease": None if lease is None else _lease_out(lease, db)}


@router.get("/projects/{name}/stats", response_model=s.Stats)
def get_stats(name: str, caller: Member, db: DB) -> Any:
    """Queue counts, labels in the last hour and people's labels per annotator."""
    project = get_project(name, engine=db)
    counts = queue_stats(project, engine=db)
    since = datetime.now(UTC) - timedelta(hours=1)
    human = (
        label_annotations.c.project_id == project.project_id,
        label_annotations.c.origin == "human",
        ~label_annotations.c.skipped,
    )
    with db.connect() as conn:
        last_hour = conn.execute(
            select(func.count())
            .select_from(label_annotations)
            .where(*human, label_annotations.c.created_at > since)
        ).scalar_one()
        per = conn.execute(
            select(label_annotations.c.annotator, func.count())
            .where(*human)
            .group_by(label_annotations.c.annotator)
            .order_by(label_annotations.c.annotator)
        ).all()
    return {
        **asdict(counts),
        "labels_last_hour": int(last_hour),
        "by_annotator": {a: int(c) for a, c in per},
    }


# --- reviews: the logic lives in inloop.label.review ----------------------------------------

_REVIEW_MODULE = "inloop.label.review"


def _review_module() -> Any:
    if importlib.util.find_spec(_REVIEW_MODULE) is None:
        raise HTTPException(
            501,
            "Review queues are not available in this inloop build (no inloop.label.review). "
            "Upgrade inloop.",
        )
    return importlib.import_module(_REVIEW_MODULE)


def _field(record: Any, *names: str) -> Any:
    for name in names:
        if isinstance(record, dict) and name in record:
            return record[name]
        if hasattr(record, name):
            return getattr(record, name)
    return None


def _review_out(record: Any) -> dict[str, Any]:
    item = _field(record, "item")
    if isinstance(item, Item):
        item_out = _item_out(item)
    elif is_dataclass(item) and not isinstance(item, type):
        item_out = asdict(item)
    else:
        item_out = dict(item) if item is not None else {}
    if "id" not in item_out and "item_id" in item_out:
        item_out["id"] = item_out["item_id"]
    return {
        "id": _field(record, "id", "review_id"),
        "kind": _field(record, "kind"),
        "item": item_out,
        "given": _field(record, "given"),
        "suggested": _field(record, "suggested"),
        "confidence": _field(record, "confidence"),
        "score": _field(record, "score"),
        "reason": _field(record, "reason"),
    }


@router.get("/projects/{name}/reviews", response_model=s.ReviewsResponse)
def get_reviews(
    name: str,
    caller: ReviewerMember,
    db: DB,
    kind: Annotated[str | None, Query(pattern="^(audit|disagreement)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """The open reviews of a project (of ``kind``, or all), most suspicious first (reviewer+)."""
    module = _review_module()
    records = module.review_queue(name, kind, limit=limit, engine=db)
    return {"reviews": [_review_out(r) for r in records]}


@router.post("/projects/{name}/reviews/{review_id}/decision")
def post_decision(
    name: str,
    review_id: Annotated[int, Path(ge=1, le=INT32_MAX)],
    body: s.DecisionRequest,
    caller: ReviewerMember,
    db: DB,
) -> dict[str, Any]:
    """Keep the given label or change it; the decision is recorded (reviewer or higher)."""
    if body.decision == "change" and body.label is None:
        raise LabelError(
            "The 'label' field is required when 'decision' is 'change': give the class to "
            "change the label to."
        )
    module = _review_module()
    review = module.decide(name, review_id, caller.name, body.decision, body.label, engine=db)
    return {
        **_review_out(review),
        "decision": _field(review, "decision") or body.decision,
        "label": _field(review, "decided_label"),
    }


# GET/PATCH /api/users and project members: inloop.web.access.
router.include_router(access_router)
