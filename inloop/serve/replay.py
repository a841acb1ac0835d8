"""Replay and evaluation on the request archive: how would another model have answered?

:func:`replay` scores the archived inputs of a service with a candidate model
version and compares its answers with the champion's archived scores of the
very same requests: how often the two agree, how confident each was, which
classes they swap, and — on requests that got feedback — how accurate each
was. It streams through the archive a page at a time, so a month of requests
costs no more memory than an hour.

:func:`evaluate` needs no model at all: for every model that scored the
service's requests that got feedback (champion, challengers, canary,
fallback), its accuracy on those requests, all compared on the requests the
champion answered.

Both judge an instance by the label :mod:`inloop.serve.feedback` defines: the
most trusted role's latest label of it.

>>> from inloop.store import get_engine, open_artifact_store
>>> from inloop.serve.models import MajorityClass
>>> from inloop.serve.policy import create_service
>>> from inloop.serve.registry import register
>>> engine, store = get_engine("sqlite://"), open_artifact_store("memory://replay-doc")
>>> _ = register(MajorityClass(["a", "b"], [1, 3]), name="doc-r", engine=engine,
...              artifacts=store)
>>> _ = create_service("doc-replay", {"champion": "doc-r@1", "fallback": {"label": "a"}},
...                    created_by="ana", reason="launch", engine=engine)
>>> report = replay("doc-replay", "doc-r@1", engine=engine, artifacts=store)
>>> report.n_requests, report.agreement
(0, None)
>>> evaluate("doc-replay", engine=engine)
[]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.table import Table
from sqlalchemy import Connection, Engine, and_, exists, func, or_, select

from inloop.serve.feedback import labels_of
from inloop.serve.models import LoadedModel, ServeError
from inloop.serve.policy import find_service_id
from inloop.serve.registry import load
from inloop.serve.scoring import as_batch, score_model
from inloop.serve.tables import serve_feedback_events, serve_requests, serve_scores
from inloop.store.db import get_engine

if TYPE_CHECKING:
    from inloop.store.artifacts import ArtifactStore

__all__ = [
    "QUANTILES",
    "ModelEvaluation",
    "ReplayReport",
    "evaluate",
    "replay",
]

#: The quantiles of the top probability a :class:`ReplayReport` gives, by name.
QUANTILES: dict[str, float] = {"p05": 0.05, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p95": 0.95}
#: The top probabilities are counted in this many bins of [0, 1], so memory stays
#: bounded however long the window; a quantile is exact to 1 / _BINS.
_BINS = 10_000
#: How many (champion, candidate) disagreement pairs a report keeps.
_TOP_DISAGREEMENTS = 10


def _fraction(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class ReplayReport:
    """How a candidate model would have answered a service's archived requests.

    ``n_requests`` counts every archived request in the window;
    ``n_skipped`` those archived without their inputs (the decoy was off);
    ``n_champion_missing`` the replayed ones without an ``ok`` champion score;
    ``n_candidate_failed`` those the candidate could not score (its inputs did
    not fit the model). ``n_instances`` counts the instances the candidate
    scored. ``agreement`` is the share of instances where the candidate
    predicts what the champion did (on requests with a champion score).
    ``candidate_accuracy`` and ``champion_accuracy`` are measured on the same
    ``n_labeled`` instances: those with feedback that both models scored.
    ``disagreements`` holds the most frequent ``(champion, candidate, count)``
    prediction pairs where the two differ. Rates are None when nothing was
    there to measure.
    """

    service: str
    model: str
    champion: tuple[str, ...]
    n_requests: int
    n_instances: int
    n_skipped: int
    n_champion_missing: int
    agreement: float | None
    candidate_score_quantiles: dict[str, float] | None
    champion_score_quantiles: dict[str, float] | None
    n_labeled: int
    candidate_accuracy: float | None
    champion_accuracy: float | None
    disagreements: tuple[tuple[Any, Any, int], ...]
    since: datetime | None
    until: datetime | None
    n_candidate_failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON values (times in ISO 8601).

        >>> empty = ReplayReport("svc", "m@2", (), 0, 0, 0, 0, None, None, None, 0, None, None,
        ...                      (("a", "b", 3),), None, None)
        >>> empty.to_dict()["disagreements"]
        [{'champion': 'a', 'candidate': 'b', 'count': 3}]
        """
        return {
            "service": self.service,
            "model": self.model,
            "champion": list(self.champion),
            "n_requests": self.n_requests,
            "n_instances": self.n_instances,
            "n_skipped": self.n_skipped,
            "n_champion_missing": self.n_champion_missing,
            "n_candidate_failed": self.n_candidate_failed,
            "agreement": self.agreement,
            "candidate_score_quantiles": self.candidate_score_quantiles,
            "champion_score_quantiles": self.champion_score_quantiles,
            "n_labeled": self.n_labeled,
            "candidate_accuracy": self.candidate_accuracy,
            "champion_accuracy": self.champion_accuracy,
            "disagreements": [
                {"champion": champ, "candidate": cand, "count": count}
                for champ, cand, count in self.disagreements
            ],
            "since": _iso(self.since),
            "until": _iso(self.until),
        }

    def table(self) -> Table:
        """The report as a Rich table: one row per measure, candidate beside champion."""
        champion = ", ".join(self.champion) or "-"
        table = Table(title=f"Replay of {self.model} on {self.service}")
        table.add_column("measure")
        table.add_column(f"candidate {self.model}", justify="right")
        table.add_column(f"champion {champion}", justify="right")
        window = f"{_iso(self.since) or 'start'} .. {_iso(self.until) or 'now'}"
        table.add_row("window", window, "")
        table.add_row("requests", str(self.n_requests), "")
        table.add_row("skipped (no inputs)", str(self.n_skipped), "")
        table.add_row("champion missing", "", str(self.n_champion_missing))
        if self.n_candidate_failed:
            table.add_row("candidate failed", str(self.n_candidate_failed), "")
        table.add_row("instances", str(self.n_instances), "")
        table.add_row("agreement", _percent(self.agreement), "")
        table.add_row("labeled instances", str(self.n_labeled), str(self.n_labeled))
        table.add_row(
            "accuracy", _percent(self.candidate_accuracy), _percent(self.champion_accuracy)
        )
        for name in QUANTILES:
            table.add_row(
                f"top probability {name}",
                _number(self.candidate_score_quantiles, name),
                _number(self.champion_score_quantiles, name),
            )
        for champ, cand, count in self.disagreements:
            table.add_row(f"says {cand!r} where champion says {champ!r}", str(count), "")
        return table


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.1f}%"


def _number(values: Mapping[str, float] | None, name: str) -> str:
    return "-" if values is None else f"{values[name]:.3f}"


@dataclass(frozen=True)
class ModelEvaluation:
    """One model's accuracy on a service's requests that got feedback.

    ``n_requests`` requests (``n_labeled`` labeled instances) that both the
    champion and this model answered; ``roles`` the roles it played on them.

    >>> ModelEvaluation("digits@4", ("challenger",), 3, 10, 0.9).to_dict()["accuracy"]
    0.9
    """

    model: str
    roles: tuple[str, ...]
    n_requests: int
    n_labeled: int
    accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        """The evaluation as JSON values."""
        return {
            "model": self.model,
            "roles": list(self.roles),
            "n_requests": self.n_requests,
            "n_labeled": self.n_labeled,
            "accuracy": self.accuracy,
        }


@dataclass
class _Histogram:
    """Counts of values in [0, 1]: bounded memory, quantiles exact to ``1 / _BINS``."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(_BINS, dtype=np.int64))
    low: float = 1.0
    high: float = 0.0

    def add(self, values: Sequence[float]) -> None:
        if len(values) == 0:
            return
        clipped = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
        # The extremes, so a quantile never reads past the values seen (1.0 stays 1.0).
        self.low, self.high = (
            min(self.low, float(clipped.min())),
            max(self.high, float(clipped.max())),
        )
        bins = np.minimum((clipped * _BINS).astype(np.int64), _BINS - 1)
        self.counts += np.bincount(bins, minlength=_BINS)

    def quantiles(self) -> dict[str, float] | None:
        """The smallest value with at least ``q`` of the values at or below it, per quantile."""
        total = int(self.counts.sum())
        if total == 0:
            return None
        cumulative = np.cumsum(self.counts)
        out = {}
        for name, q in QUANTILES.items():
            rank = max(int(np.ceil(q * total)), 1)
            index = int(np.searchsorted(cumulative, rank))
            centre = (index + 0.5) / _BINS
            out[name] = round(min(max(centre, self.low), self.high), 5)
        return out


@dataclass
class _Tally:
    """What :func:`replay` adds up while it pages through the archive."""

    champions: dict[str, None] = field(default_factory=dict)  # ordered set
    n_requests: int = 0
    n_instances: int = 0
    n_skipped: int = 0
    n_champion_missing: int = 0
    n_candidate_failed: int = 0
    n_compared: int = 0
    n_agree: int = 0
    n_labeled: int = 0
    candidate_right: int = 0
    champion_right: int = 0
    candidate_top: _Histogram = field(default_factory=_Histogram)
    champion_top: _Histogram = field(default_factory=_Histogram)
    disagreements: Counter[tuple[Any, Any]] = field(default_factory=Counter)


def _check_window(since: datetime | None, until: datetime | None) -> None:
    for name, value in (("since", since), ("until", until)):
        if value is not None and not isinstance(value, datetime):
            raise ServeError(
                f"The '{name}' of a replay window must be a datetime or None. Got {value!r}."
            )
    if since is not None and until is not None and _utc(since) > _utc(until):
        raise ServeError(
            f"The replay window is empty: since ({since.isoformat()}) is after until "
            f"({until.isoformat()}). Pass since <= until."
        )


def _utc(value: datetime) -> datetime:
    # Naive times are UTC, as everywhere in the store.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _check_count(value: object, what: str, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        accepted = "an int >= 1" + (" or None" if allow_none else "")
        raise ServeError(f"The '{what}' parameter of replay must be {accepted}. Got {value!r}.")


def _window_filter(service_id: int, since: datetime | None, until: datetime | None) -> Any:
    """Requests of the service received in ``[since, until)``."""
    requests = serve_requests.c
    clauses = [requests.service_id == service_id]
    if since is not None:
        clauses.append(requests.received_at >= _utc(since))
    if until is not None:
        clauses.append(requests.received_at < _utc(until))
    return and_(*clauses)


def _pages(
    conn: Connection, where: Any, page_size: int, limit: int | None
) -> Iterator[Sequence[Any]]:
    """Archived requests in (received_at, request_id) order, ``page_size`` at a time.

    Keyset pagination: each page starts after the last row of the previous one,
    so no page costs more than the first, whatever the offset.
    """
    requests = serve_requests.c
    columns = [requests.request_id, requests.received_at, requests.n_instances, requests.inputs]
    remaining = limit
    last: tuple[datetime, str] | None = None
    while remaining is None or remaining > 0:
        size = page_size if remaining is None else min(page_size, remaining)
        query = select(*columns).where(where)
        if last is not None:
            query = query.where(
                or_(
                    requests.received_at > last[0],
                    and_(requests.received_at == last[0], requests.request_id > last[1]),
                )
            )
        rows = conn.execute(
            query.order_by(requests.received_at, requests.request_id).limit(size)
        ).all()
        if not rows:
            return
        yield rows
        last = (rows[-1].received_at, rows[-1].request_id)
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < size:
            return


def _champion_scores(conn: Connection, request_ids: Sequence[str]) -> dict[str, Any]:
    rows = conn.execute(
        select(
            serve_scores.c.request_id,
            serve_scores.c.model,
            serve_scores.c.predictions,
            serve_scores.c.probabilities,
        ).where(
            serve_scores.c.request_id.in_(list(request_ids)),
            serve_scores.c.role == "champion",
            serve_scores.c.status == "ok",
        )
    ).all()
    return {r.request_id: r for r in rows}


def _chunks(rows: Sequence[Any], batch_size: int) -> Iterator[Sequence[Any]]:
    """Whole requests grouped into chunks of at most ``batch_size`` instances (a larger
    request makes a chunk of its own)."""
    chunk: list[Any] = []
    size = 0
    for row in rows:
        n = len(row.inputs)
        if chunk and size + n > batch_size:
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += n
    if chunk:
        yield chunk


def _score_chunk(
    model: LoadedModel, ref: str, chunk: Sequence[Any]
) -> list[tuple[list[Any], list[list[float]]] | None]:
    """The candidate's (predictions, probabilities) per request; None where it failed.

    One ``predict_proba`` call for the whole chunk; if the requests cannot be
    stacked into one batch (ragged inputs) or the batch fails, each request
    is scored alone so one bad request does not sink its neighbours.
    """
    try:
        X = as_batch([x for row in chunk for x in row.inputs])
    except ValueError:
        X = None
    if X is not None:
        score = score_model(model, X, ref, "candidate")
        if score.ok and score.predictions is not None and score.probabilities is not None:
            out: list[tuple[list[Any], list[list[float]]] | None] = []
            start = 0
            for row in chunk:
                end = start + len(row.inputs)
                out.append((score.predictions[start:end], score.probabilities[start:end]))
                start = end
            return out
        if len(chunk) == 1:
            return [None]
    results: list[tuple[list[Any], list[list[float]]] | None] = []
    for row in chunk:
        try:
            X = as_batch(row.inputs)
        except ValueError:
            results.append(None)
            continue
        score = score_model(model, X, ref, "candidate")
        if score.ok and score.predictions is not None and score.probabilities is not None:
            results.append((score.predictions, score.probabilities))
        else:
            results.append(None)
    return results


def _top(probabilities: Sequence[Sequence[float]]) -> list[float]:
    return [max(row) for row in probabilities if row]


def _replay_page(
    conn: Connection, rows: Sequence[Any], model: LoadedModel, ref: str, batch_size: int, t: _Tally
) -> None:
    t.n_requests += len(rows)
    with_inputs = [r for r in rows if isinstance(r.inputs, list) and r.inputs]
    t.n_skipped += len(rows) - len(with_inputs)
    if not with_inputs:
        return
    ids = [r.request_id for r in with_inputs]
    champions = _champion_scores(conn, ids)
    labels = labels_of(conn, {r.request_id: r.n_instances for r in with_inputs})
    for chunk in _chunks(with_inputs, batch_size):
        for row, scored in zip(chunk, _score_chunk(model, ref, chunk), strict=True):
            if scored is None:
                t.n_candidate_failed += 1
                continue
            predictions, probabilities = scored
            n = len(predictions)
            t.n_instances += n
            t.candidate_top.add(_top(probabilities))
            champ = champions.get(row.request_id)
            if champ is None or not isinstance(champ.predictions, list):
                t.n_champion_missing += 1
                continue
            if len(champ.predictions) != n:
                t.n_champion_missing += 1  # an archive row that does not match its inputs
                continue
            t.champions.setdefault(champ.model, None)
            if isinstance(champ.probabilities, list):
                t.champion_top.add(_top(champ.probabilities))
            truth = labels.get(row.request_id)
            if truth is not None and len(truth) != n:
                truth = None
            for i, (cand, chp) in enumerate(zip(predictions, champ.predictions, strict=True)):
                t.n_compared += 1
                if cand == chp:
                    t.n_agree += 1
                else:
                    t.disagreements[(chp, cand)] += 1
                if truth is not None and truth[i] is not None:
                    t.n_labeled += 1
                    t.candidate_right += int(cand == truth[i])
                    t.champion_right += int(chp == truth[i])


def replay(
    service: str,
    model: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    engine: Engine | None = None,
    artifacts: ArtifactStore | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Score the archived inputs of ``service`` with ``model`` and compare with its champion.

    ``model`` is a registered version ``"name@N"``. Requests received in
    ``[since, until)`` (naive times are UTC) are read oldest first, at most
    ``limit`` of them, ``batch_size`` requests per page of the archive; the
    candidate scores whole requests, up to ``batch_size`` instances per
    ``predict_proba`` call. ``progress(done, total)`` is called after each
    page with the requests read so far.

    An empty window is not an error: the report says ``n_requests == 0``.
    """
    _check_window(since, until)
    _check_count(limit, "limit", allow_none=True)
    _check_count(batch_size, "batch_size", allow_none=False)
    eng = engine if engine is not None else get_engine()
    candidate = load(model, engine=eng, artifacts=artifacts)
    ref = f"{candidate.name}@{candidate.version}"
    tally = _Tally()
    with eng.connect() as conn:
        service_id = find_service_id(conn, service)
        where = _window_filter(service_id, since, until)
        total = int(
            conn.execute(select(func.count()).select_from(serve_requests).where(where)).scalar()
            or 0
        )
        if limit is not None:
            total = min(total, limit)
        if progress is not None:
            progress(0, total)
        for rows in _pages(conn, where, batch_size, limit):
            _replay_page(conn, rows, candidate, ref, batch_size, tally)
            if progress is not None:
                progress(tally.n_requests, total)
    pairs = tally.disagreements.most_common(_TOP_DISAGREEMENTS)
    return ReplayReport(
        service=service,
        model=ref,
        champion=tuple(tally.champions),
        n_requests=tally.n_requests,
        n_instances=tally.n_instances,
        n_skipped=tally.n_skipped,
        n_champion_missing=tally.n_champion_missing,
        agreement=_fraction(tally.n_agree, tally.n_compared),
        candidate_score_quantiles=tally.candidate_top.quantiles(),
        champion_score_quantiles=tally.champion_top.quantiles(),
        n_labeled=tally.n_labeled,
        candidate_accuracy=_fraction(tally.candidate_right, tally.n_labeled),
        champion_accuracy=_fraction(tally.champion_right, tally.n_labeled),
        disagreements=tuple((champ, cand, count) for (champ, cand), count in pairs),
        since=since,
        until=until,
        n_candidate_failed=tally.n_candidate_failed,
    )


@dataclass
class _ModelTally:
    roles: set[str] = field(default_factory=set)
    n_requests: int = 0
    n_labeled: int = 0
    n_right: int = 0


_EVALUATE_PAGE = 500


def evaluate(
    service: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    engine: Engine | None = None,
) -> list[ModelEvaluation]:
    """Every model's accuracy on the service's requests with feedback, best first.

    Only requests received in ``[since, until)`` that have feedback and an
    ``ok`` champion score count, and each model is measured on those of them
    it answered too: challengers, canary and fallback face the champion on the
    same requests. Models with no labeled instance are listed last.
    """
    _check_window(since, until)
    eng = engine if engine is not None else get_engine()
    tallies: dict[str, _ModelTally] = {}
    with eng.connect() as conn:
        service_id = find_service_id(conn, service)
        has_feedback = exists(
            select(serve_feedback_events.c.event_id).where(
                serve_feedback_events.c.request_id == serve_requests.c.request_id
            )
        )
        where = and_(_window_filter(service_id, since, until), has_feedback)
        for rows in _pages(conn, where, _EVALUATE_PAGE, None):
            _evaluate_page(conn, rows, tallies)
    out = [
        ModelEvaluation(
            model=name,
            roles=tuple(sorted(t.roles)),
            n_requests=t.n_requests,
            n_labeled=t.n_labeled,
            accuracy=_fraction(t.n_right, t.n_labeled),
        )
        for name, t in tallies.items()
    ]
    out.sort(key=lambda e: (e.accuracy is None, -(e.accuracy or 0.0), e.model))
    return out


def _evaluate_page(conn: Connection, rows: Sequence[Any], tallies: dict[str, _ModelTally]) -> None:
    n_of = {r.request_id: r.n_instances for r in rows}
    truth = labels_of(conn, n_of)
    scores = conn.execute(
        select(
            serve_scores.c.request_id,
            serve_scores.c.model,
            serve_scores.c.role,
            serve_scores.c.predictions,
        ).where(serve_scores.c.request_id.in_(list(n_of)), serve_scores.c.status == "ok")
    ).all()
    by_request: dict[str, list[Any]] = {}
    for s in scores:
        by_request.setdefault(s.request_id, []).append(s)
    for request_id, request_scores in by_request.items():
        if not any(s.role == "champion" for s in request_scores):
            continue  # compared only where the champion answered
        labels = truth.get(request_id)
        if labels is None:
            continue
        for s in request_scores:
            if not isinstance(s.predictions, list) or len(s.predictions) != len(labels):
                continue
            t = tallies.setdefault(s.model, _ModelTally())
            t.roles.add(s.role)
            t.n_requests += 1
            for predicted, label in zip(s.predictions, labels, strict=True):
                if label is not None:
                    t.n_labeled += 1
                    t.n_right += int(predicted == label)
