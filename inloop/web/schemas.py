"""The REST API's request and response bodies, kept apart.

Requests are checked here at the edge (unknown fields are refused); responses
describe what the API returns, for the OpenAPI document at ``/openapi.json``.

>>> NextRequest(n=5).n
5
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from inloop.label.items import MAX_NOTE_CHARS
from inloop.store.text import INT32_MAX

__all__ = [
    "AnnotationCreated",
    "AnnotationRequest",
    "ClassIn",
    "ClassOut",
    "DecisionRequest",
    "ItemOut",
    "ItemRow",
    "ItemsCreated",
    "ItemsPage",
    "ItemsRequest",
    "LeaseOut",
    "NextRequest",
    "NextResponse",
    "ProjectDetail",
    "ProjectOut",
    "ProjectRequest",
    "Review",
    "ReviewsResponse",
    "Stats",
    "Suggestion",
    "UndoResponse",
    "UserCreated",
    "UserOut",
    "UserRequest",
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests ------------------------------------------------------------------------------


class ClassIn(_Request):
    """A class of a new project; ``key`` is the one character that picks it on the page."""

    name: str
    key: str | None = None


class ProjectRequest(_Request):
    """``POST /api/projects``: classes as names or ``{"name", "key"}``.

    ``task_type`` is ``single_label`` (default) or ``multi_label``.
    """

    name: str
    classes: list[ClassIn | str]
    task_type: Literal["single_label", "multi_label"] = "single_label"
    instructions: str = ""
    overlap: int = Field(1, ge=1, le=INT32_MAX)


class ItemIn(_Request):
    """One item to import: ``kind`` is text, image or features.

    ``note`` is shown to labelers beside the item (why it is in the queue).
    """

    external_id: str | int
    kind: Literal["text", "image", "features"]
    payload: Any
    priority: float = Field(0.0, allow_inf_nan=False)
    note: str | None = Field(None, min_length=1, max_length=MAX_NOTE_CHARS)


class ItemsRequest(_Request):
    """``POST /api/projects/{name}/items``."""

    items: list[ItemIn] = Field(min_length=1, max_length=10_000)


class NextRequest(_Request):
    """``POST /api/projects/{name}/next``: how many leases the caller wants in hand."""

    n: int = Field(1, ge=1, le=50)


class AnnotationRequest(_Request):
    """``POST /api/projects/{name}/annotations``: ``label`` null means skip.

    A multi-label project takes ``labels`` (a list of classes, ``[]`` for none
    of them, null to skip) instead of ``label``; exactly one of them is sent.
    """

    item_id: int = Field(ge=1, le=INT32_MAX)
    label: str | None = None
    labels: list[str] | None = None
    seconds: float | None = Field(None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_answer(self) -> AnnotationRequest:
        given = {"label", "labels"} & self.model_fields_set
        if len(given) != 1:
            raise ValueError(
                "send exactly one of 'label' (a class name, or null to skip, for single-label "
                "projects) and 'labels' (a list of class names, [] for none of them, or null "
                f"to skip, for multi-label projects); got {sorted(given) or 'neither'}"
            )
        return self


class DecisionRequest(_Request):
    """``POST .../reviews/{id}/decision``: keep the given label, or change it to ``label``."""

    decision: Literal["keep", "change"]
    label: str | None = None


class UserRequest(_Request):
    """``POST /api/users``."""

    name: str
    role: Literal["annotator", "reviewer", "scientist", "admin"]


# --- responses -----------------------------------------------------------------------------


class UserOut(BaseModel):
    name: str
    role: str


class UserCreated(UserOut):
    """The new user's token: shown once, stored hashed."""

    token: str


class ClassOut(BaseModel):
    name: str
    key: str | None


class ProjectOut(BaseModel):
    name: str
    task_type: str
    classes: list[ClassOut]
    instructions: str
    overlap: int


class QueueCounts(BaseModel):
    items: int
    complete: int
    leased: int
    labels_needed: int


class ProjectDetail(ProjectOut):
    stats: QueueCounts


class Stats(QueueCounts):
    labels_last_hour: int
    by_annotator: dict[str, int]


class ItemsCreated(BaseModel):
    item_ids: list[int]


class ItemRow(BaseModel):
    id: int
    external_id: str
    kind: str
    payload: dict[str, Any]
    priority: float
    current_label: str | None
    current_labels: list[str] | None = None
    note: str | None = None
    count: int = 1


class ItemsPage(BaseModel):
    items: list[ItemRow]
    total: int


class ItemOut(BaseModel):
    id: int
    external_id: str
    kind: str
    payload: dict[str, Any]
    note: str | None = None
    count: int = 1


class Suggestion(BaseModel):
    label: str
    confidence: float


class LeaseOut(BaseModel):
    lease_id: int
    expires_at: datetime
    item: ItemOut
    suggestion: Suggestion | None = None


class NextResponse(BaseModel):
    leases: list[LeaseOut]


class UndoResponse(BaseModel):
    lease: LeaseOut | None


class AnnotationCreated(BaseModel):
    id: int
    item_id: int
    label: str | None
    labels: list[str] | None = None
    created_at: datetime


class Review(BaseModel):
    id: int
    kind: str
    item: ItemOut
    given: str | None
    suggested: str | None
    confidence: float | None
    score: float | None
    reason: str | None


class ReviewsResponse(BaseModel):
    reviews: list[Review]
