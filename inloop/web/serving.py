"""The serving API under ``/v1``: predict, feedback, services, promotion and rollback.

``POST /v1/services/{name}/predict`` answers through the app's
:class:`~inloop.serve.rendezvous.Rendezvous` (``app.state.rendezvous``), so the
champion, challengers and canary all score each request and the decoy archives
it. Every route needs an API token (``Authorization: Bearer <token>``);
changing a policy needs the scientist role. A token seen here is remembered
for :data:`TOKEN_CACHE_SECONDS`, so prediction costs no database lookup for
it; requests with the same token share one lookup. A token revoked or a user
disabled through this server stops working at once, through another process
(``inloop users``) within :data:`ACCESS_CHECK_SECONDS`.

>>> router.prefix
'/v1'
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from inloop.errors import InloopError
from inloop.serve.archive import RequestNotFoundError, RequestView, add_feedback, get_request
from inloop.serve.feedback import FeedbackRoleError
from inloop.serve.policy import (
    current_policy,
    list_services,
    policy_history,
    promote,
    rollback,
)
from inloop.serve.rendezvous import NoAnswerError, Rendezvous
from inloop.store.text import INT32_MAX
from inloop.web.auth import (
    Principal,
    User,
    authenticate,
    current_user,
    hash_secret,
    optional_user,
    request_engine,
    require,
)
from inloop.web.edge import BODY_LIMIT_KEY, JSON_KEY

__all__ = ["ACCESS_CHECK_SECONDS", "TOKEN_CACHE_SECONDS", "router"]

#: How long a token stays trusted without a database lookup on the serving routes.
TOKEN_CACHE_SECONDS = 10.0
#: A token revoked, or a user disabled, by another process (the CLI, another server)
#: stops working on the serving routes within this time.
ACCESS_CHECK_SECONDS = 1.0

router = APIRouter(prefix="/v1", tags=["serving"])


_Lookup = Callable[[str], Awaitable[User | None]]


def _token_lookup(engine: Engine) -> _Lookup:
    """Look a token up in ``engine``'s database, in a thread."""

    async def lookup(token: str) -> User | None:
        return await run_in_threadpool(authenticate, token, engine=engine)

    return lookup


class TokenCache:
    """Token digest -> the user it signs in, for the hot prediction path.

    An entry is trusted for :data:`TOKEN_CACHE_SECONDS` from its lookup. Past
    half that, the next request starts a new lookup in the background and is
    answered from the entry meanwhile, so a busy server does not wait on the
    database for a token it knows. Requests that do wait (an unknown or expired
    token) share one lookup per token: when an entry expires under load,
    hundreds of requests in flight would otherwise each take a thread and a
    database connection to look up the same token.

    With ``engine``, the cache also reads
    :func:`~inloop.web.auth.access_version` (in the background, every half of
    :data:`ACCESS_CHECK_SECONDS` while requests come) and drops every entry when
    users or tokens changed, so a token revoked or a user disabled by another
    process stops working within :data:`ACCESS_CHECK_SECONDS`. A request that
    comes when the last check is older than that waits for a new one (one
    indexed read). :meth:`clear` drops the entries at once: the server's own
    user routes call it.
    """

    def __init__(self, engine: Engine | None = None) -> None:
        self._users: dict[str, tuple[User, float]] = {}  # digest -> (user, looked up at)
        self._lookups: dict[str, asyncio.Future[User | None]] = {}
        self._engine = engine
        self._version: int | None = None
        self._checked_at = -math.inf  # when the last finished version check started
        self._check: asyncio.Future[None] | None = None
        # clear() runs in route threads; lookups finish on the event loop.
        self._lock = threading.Lock()
        self._epoch = 0  # bumped by clear(): lookups started before it are not kept

    def clear(self) -> None:
        """Forget every token at once (thread-safe): the next requests look theirs up."""
        with self._lock:
            self._epoch += 1
            self._users.clear()

    async def user(self, token: str, lookup: _Lookup) -> User | None:
        """The user of ``token``, from the cache or from ``lookup`` (None: not a valid token)."""
        if self._engine is not None and not self._checked_recently():
            await asyncio.shield(self._check or self._check_version())
        digest = hash_secret(token)
        user = self._cached(digest, token, lookup)
        if user is not None:
            return user
        pending = self._lookups.get(digest) or self._look_up(digest, token, lookup)
        # Shielded: a caller that goes away does not cancel the others' lookup.
        return await asyncio.shield(pending)

    def cached(self, token: str, lookup: _Lookup) -> User | None:
        """The user of ``token`` if the cache trusts it now, else None (no waiting)."""
        return self._cached(hash_secret(token), token, lookup)

    def _checked_recently(self) -> bool:
        age = time.monotonic() - self._checked_at
        if age >= ACCESS_CHECK_SECONDS / 2 and self._check is None:
            self._check_version()
        return age < ACCESS_CHECK_SECONDS

    def _check_version(self) -> asyncio.Future[None]:
        from inloop.web.auth import access_version

        started = time.monotonic()
        engine = self._engine

        async def check() -> None:
            version = await run_in_threadpool(access_version, engine=engine)
            if self._version is not None and version != self._version:
                self.clear()
            self._version = version
            self._checked_at = started

        future = asyncio.ensure_future(check())
        self._check = future

        def done(future: asyncio.Future[None]) -> None:
            self._check = None
            if not future.cancelled():
                future.exception()  # a failed check reaches the requests that wait on it

        future.add_done_callback(done)
        return future

    def _cached(self, digest: str, token: str, lookup: _Lookup) -> User | None:
        if self._engine is not None and not self._checked_recently():
            return None
        found = self._users.get(digest)
        if found is None:
            return None
        user, looked_up = found
        age = time.monotonic() - looked_up
        if age >= TOKEN_CACHE_SECONDS:
            self._users.pop(digest, None)
            return None
        if age >= TOKEN_CACHE_SECONDS / 2 and digest not in self._lookups:
            self._look_up(digest, token, lookup)
        return user

    def _look_up(self, digest: str, token: str, lookup: _Lookup) -> asyncio.Future[User | None]:
        started = time.monotonic()
        epoch = self._epoch
        future = asyncio.ensure_future(lookup(token))
        self._lookups[digest] = future

        def done(future: asyncio.Future[User | None]) -> None:
            self._lookups.pop(digest, None)
            # A failed lookup reaches the requests that wait on it; a background one that
            # fails leaves the entry to expire, and the first request after that sees why.
            if future.cancelled() or future.exception() is not None:
                return
            user = future.result()
            with self._lock:
                if user is None:
                    self._users.pop(digest, None)
                    return
                if epoch != self._epoch:
                    return  # looked up before a clear(): maybe from before the change
                if len(self._users) > 10_000:
                    self._users.clear()
                self._users[digest] = (user, started)

        future.add_done_callback(done)
        return future


def _bearer(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header ('' for any other)."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def serving_caller(request: Request) -> Principal:
    """The signed-in caller, with tokens cached for :data:`TOKEN_CACHE_SECONDS`."""
    token = _bearer(request.headers.get("authorization", ""))
    if token:
        # One cache per app: an app's tokens are those of its own database.
        tokens: TokenCache | None = getattr(request.app.state, "serving_tokens", None)
        if tokens is None:
            tokens = request.app.state.serving_tokens = TokenCache(request_engine(request))
        user = await tokens.user(token, _token_lookup(request_engine(request)))
        if user is not None:
            return Principal(user, "token")
    # No token, or not a valid one: the session cookie, or the error that says what is wrong.
    return await current_user(await optional_user(request))


Caller = Annotated[Principal, Depends(serving_caller)]
Reviewer = Annotated[Principal, Depends(require("reviewer"))]
Scientist = Annotated[Principal, Depends(require("scientist"))]


async def _rendezvous(request: Request) -> Rendezvous:
    # async: FastAPI runs a plain def dependency in a thread pool, two thread hops a request.
    found: Rendezvous | None = getattr(request.app.state, "rendezvous", None)
    if found is None:
        raise HTTPException(503, "Serving is off in this app (create_app(serving=False)).")
    return found


RendezvousDep = Annotated[Rendezvous, Depends(_rendezvous)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _exactly_one(one: object, many: object, message: str) -> None:
    if (one is None) == (many is None):
        raise ValueError(message)


class PredictRequest(_Body):
    """One instance (``instance``) or a batch (``instances``), exactly one of the two."""

    instance: Any = None
    instances: list[Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> PredictRequest:
        _exactly_one(
            self.instance,
            self.instances,
            "send exactly one of 'instance' (one instance, such as [0.1, 0.2]) and "
            "'instances' (a batch, such as [[0.1, 0.2], [0.3, 0.4]])",
        )
        return self


class FeedbackRequest(_Body):
    """The true label of a request's instance (``label``), or of each instance (``labels``)."""

    request_id: str = Field(min_length=1, max_length=64)
    label: Any = None
    labels: list[Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> FeedbackRequest:
        _exactly_one(
            self.label,
            self.labels,
            "send exactly one of 'label' (the true label of a one-instance request) and "
            "'labels' (one per instance of a batch, in order)",
        )
        return self


class PromoteRequest(_Body):
    model: str = Field(
        description="The registered model version to make champion, 'name@N'.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}@[1-9][0-9]{0,8}$",
        max_length=265,
    )
    reason: str = Field(min_length=1, description="Why: recorded with the new revision.")
    keep_old_champion: bool = True


class RollbackRequest(_Body):
    reason: str = Field(min_length=1, description="Why: recorded with the new revision.")
    to_revision: int | None = Field(default=None, ge=1, le=INT32_MAX)


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(
        json.dumps(content, separators=(",", ":")),
        status_code=status_code,
        media_type="application/json",
    )


class ArrivalStamp:
    """ASGI middleware in front of the serving routes: stamp, refuse, and answer predict.

    - Every request is stamped with when it reached the app
      (``scope["inloop.arrived"]``). The rendezvous counts a request's deadline
      from it, so time spent queued in the server before the route runs counts
      too (and past saturation, sheds).
    - A predict request the rendezvous refuses (the server is far behind: see
      :meth:`~inloop.serve.rendezvous.Rendezvous.refusal`) is answered 503 with
      ``Retry-After`` here, before its body is read, which costs the server
      next to nothing.
    - With ``tokens`` and ``errors`` given, a predict request is answered here
      when it is the common case: a bearer token the serving token cache
      trusts, a JSON body of exactly ``instance`` or ``instances``. FastAPI's
      routing, dependencies and body model cost the event loop more per
      request than the rendezvous's own work does. The answer, and an error the
      rendezvous raises (``errors`` turns it into the app's response), are the
      route's own; any other request goes on to the route with its body as
      read, so the route's checks and messages apply to it.
    """

    def __init__(
        self,
        app: Any,
        rendezvous: Rendezvous | None = None,
        tokens: TokenCache | None = None,
        errors: Callable[[Exception], Response] | None = None,
    ) -> None:
        self.app = app
        self.rendezvous = rendezvous
        self.tokens = tokens
        self.errors = errors
        self._lookup = None if rendezvous is None else _token_lookup(rendezvous.engine)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["inloop.arrived"] = time.perf_counter()
            path: str = scope["path"]
            if (
                self.rendezvous is not None
                and path.startswith(_SERVICES)
                and path.endswith(_PREDICT)
                and scope["method"] == "POST"
            ):
                service = path[len(_SERVICES) : -len(_PREDICT)]
                why = self.rendezvous.refusal(service)
                if why is not None:
                    refused = _json({"detail": why}, status_code=503)
                    refused.headers["Retry-After"] = "1"
                    await refused(scope, receive, send)
                    return
                if service and "/" not in service:
                    # The edge (inloop.web.edge) holds the body to the service's own limit.
                    limits = await self.rendezvous.limits(service)
                    scope[BODY_LIMIT_KEY] = (limits.max_bytes, limits.source("max_bytes"))
                    if self._signed_in(scope):
                        await self._predict(service, scope, receive, send)
                        return
        await self.app(scope, receive, send)

    def _signed_in(self, scope: Any) -> bool:
        """Whether the request has a JSON body and a token the cache trusts (no waiting)."""
        if self.tokens is None or self.errors is None or self._lookup is None:
            return False
        token = content_type = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                token = value
            elif key == b"content-type":
                content_type = value
        if content_type.partition(b";")[0].strip().lower() != b"application/json":
            return False
        secret = _bearer(token.decode("latin-1"))
        return bool(secret) and self.tokens.cached(secret, self._lookup) is not None

    async def _predict(self, service: str, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        instances, single = _instances(body, scope.get(JSON_KEY, _UNPARSED))
        if instances is None:
            await self.app(scope, _replay(body, receive), send)
            return
        assert self.rendezvous is not None and self.errors is not None
        try:
            answer = await self.rendezvous.predict(
                service, instances, arrived=scope["inloop.arrived"]
            )
        except NoAnswerError as exc:
            response: Response = JSONResponse({"detail": str(exc)}, status_code=503)
        except InloopError as exc:
            response = self.errors(exc)
        else:
            response = _json(answer.to_dict(single=single))
        await response(scope, receive, send)


_UNPARSED = object()


def _instances(body: bytes, data: Any = _UNPARSED) -> tuple[list[Any] | None, bool]:
    """The instances of a predict body, and whether it held one; (None, _) if it is not plain.

    ``data`` is the body as the edge parsed and checked it, when it did.
    """
    if data is _UNPARSED:
        try:
            data = json.loads(body)
        except ValueError:
            return None, False
    if type(data) is not dict or len(data) != 1:
        return None, False
    if "instances" in data:
        instances = data["instances"]
        return (instances if type(instances) is list else None), False
    one = data.get("instance")
    return (None if one is None else [one]), True


def _replay(body: bytes, receive: Any) -> Any:
    """``receive`` for the route: the body already read, then whatever comes next."""
    replayed = False

    async def again() -> Any:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


_SERVICES, _PREDICT = "/v1/services/", "/predict"


@router.post("/services/{name}/predict")
async def predict(
    name: str, body: PredictRequest, caller: Caller, rendezvous: RendezvousDep, request: Request
) -> Response:
    """Answer one instance or a batch by the service's current policy.

    The answer names the model and version that gave it, whether the fallback
    answered, the request id (for feedback) and the latency in milliseconds.
    """
    single = body.instances is None
    instances = [body.instance] if single else body.instances
    assert instances is not None
    try:
        answer = await rendezvous.predict(
            name, instances, arrived=request.scope.get("inloop.arrived")
        )
    except NoAnswerError as exc:
        raise HTTPException(503, str(exc)) from None
    return _json(answer.to_dict(single=single))


def _view_out(view: RequestView, *, inputs: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "request_id": view.request_id,
        "service": view.service,
        "revision": view.revision,
        "received_at": view.received_at.isoformat(),
        "n_instances": view.n_instances,
        "model": view.model,
        "role": view.role,
        "fallback_used": view.fallback_used,
        "predictions": view.predictions,
        "latency_ms": view.latency_ms,
        "scores": {ref: score.to_dict() for ref, score in view.scores.items()},
        "feedback": None if view.feedback is None else view.feedback.to_dict(),
    }
    if inputs:
        out["inputs"] = view.inputs
    return out


@router.post("/services/{name}/feedback", status_code=201)
async def feedback(
    name: str, body: FeedbackRequest, caller: Caller, rendezvous: RendezvousDep
) -> dict[str, Any]:
    """Record the true label(s) of an answered request; every model's score of it is judged.

    The service's policy says which roles may (``feedback_role``, default
    reviewer and up; others get 403). Every label is kept with who gave it,
    their role and when; the one used per instance is the most trusted role's
    latest, so ``in_effect`` may differ from what was sent. ``correct`` says,
    per model, whether each of its predictions matches the label in effect.
    """
    labels = [body.label] if body.labels is None else body.labels
    engine = rendezvous.engine

    def attach() -> RequestView:
        def once() -> RequestView:
            return add_feedback(
                name, body.request_id, labels, by=caller.name, role=caller.role, engine=engine
            )

        try:
            return once()
        except RequestNotFoundError:
            # Answered a moment ago and still on its way to the archive: wait for it once.
            rendezvous.archive.flush(5.0)
            return once()

    try:
        view = await run_in_threadpool(attach)
    except FeedbackRoleError as exc:
        raise HTTPException(403, str(exc)) from None
    assert view.feedback is not None
    truth = view.feedback.labels
    correct = {
        ref: [None if t is None else p == t for p, t in zip(score.predictions, truth, strict=True)]
        for ref, score in view.scores.items()
        if score.ok and score.predictions is not None
    }
    return {
        "request_id": view.request_id,
        "labels": labels,
        "in_effect": truth,
        "correct": correct,
    }


@router.get("/services/{name}/requests/{request_id}")
async def get_archived(
    name: str, request_id: str, caller: Reviewer, rendezvous: RendezvousDep
) -> dict[str, Any]:
    """An archived request: its input, every model's score, the answer and feedback."""
    view = await run_in_threadpool(get_request, name, request_id, engine=rendezvous.engine)
    return _view_out(view, inputs=True)


@router.get("/requests/{request_id}/lineage")
async def get_lineage(
    request_id: str, caller: Reviewer, rendezvous: RendezvousDep
) -> dict[str, Any]:
    """A request's lineage: its answer and feedback, and for every model that scored it the
    registered version, the run and task it came from, the label snapshot it trained on and
    the annotators and reviewers of its labels, with counts. The id alone finds the service."""
    from inloop.serve.lineage import lineage

    found = await run_in_threadpool(lineage, request_id, engine=rendezvous.engine)
    return found.to_dict()


@router.get("/services")
async def get_services(caller: Caller, rendezvous: RendezvousDep) -> list[dict[str, Any]]:
    """Every service with its current revision and champion."""
    found = await run_in_threadpool(list_services, engine=rendezvous.engine)
    return [
        {
            "name": s.name,
            "revision": s.revision,
            "champion": s.champion,
            "created_by": s.created_by,
            "created_at": s.created_at.isoformat(),
            "description": s.description,
        }
        for s in found
    ]


@router.get("/services/{name}")
async def get_service(
    name: str,
    caller: Caller,
    rendezvous: RendezvousDep,
    history: Annotated[bool, Query(description="Include every earlier revision.")] = False,
) -> dict[str, Any]:
    """The service's current policy revision (and, with ``history=true``, every revision)."""
    engine = rendezvous.engine
    current = await run_in_threadpool(current_policy, name, engine=engine)
    out: dict[str, Any] = {"name": name, **current.to_dict()}
    if history:
        revisions = await run_in_threadpool(policy_history, name, engine=engine)
        out["history"] = [r.to_dict() for r in revisions]
    return out


@router.post("/services/{name}/promote")
async def post_promote(
    name: str, body: PromoteRequest, caller: Scientist, rendezvous: RendezvousDep
) -> dict[str, Any]:
    """Make a registered model version the champion (a new policy revision; no restart)."""
    rev = await run_in_threadpool(
        promote,
        name,
        body.model,
        by=caller.name,
        reason=body.reason,
        keep_old_champion=body.keep_old_champion,
        engine=rendezvous.engine,
    )
    rendezvous.invalidate(name)
    return {"name": name, **rev.to_dict()}


@router.post("/services/{name}/rollback")
async def post_rollback(
    name: str, body: RollbackRequest, caller: Scientist, rendezvous: RendezvousDep
) -> dict[str, Any]:
    """Restore the previous policy (or ``to_revision``) as a new revision; no restart."""
    rev = await run_in_threadpool(
        rollback,
        name,
        by=caller.name,
        reason=body.reason,
        to_revision=body.to_revision,
        engine=rendezvous.engine,
    )
    rendezvous.invalidate(name)
    return {"name": name, **rev.to_dict()}


@router.get("/services/{name}/deliveries")
async def get_deliveries(
    name: str,
    caller: Scientist,
    rendezvous: RendezvousDep,
    status: Annotated[
        str | None, Query(description="pending, delivered, failed, dropped or refused")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The newest webhook deliveries of the service's actions, newest first.

    URLs show only their scheme and host. A ``dropped`` row counts one
    request's matches that the action's limits kept from being sent; a
    ``refused`` one was not sent because its address is off limits.
    """
    from inloop.serve.actions import list_deliveries

    found = await run_in_threadpool(
        list_deliveries, name, status=status, limit=limit, engine=rendezvous.engine
    )
    return [d.to_dict() for d in found]
