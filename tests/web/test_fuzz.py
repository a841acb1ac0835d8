"""Fuzz the REST and serving API from its own OpenAPI document (schemathesis).

For every operation of ``/openapi.json`` schemathesis generates requests that
fit the schema (with the names of a real project and service, and with
random ones) and requests that do not; each is sent with an annotator's and
with an admin's token, on SQLite and PostgreSQL. The app must answer no
request with a 5xx, and a request it refuses (any 4xx) must change no row of
any table.

Deterministic: Hypothesis draws from ``INLOOP_FUZZ_SEED`` (default below), so a
failure reproduces with the same seed; ``INLOOP_FUZZ_EXAMPLES`` sets how many
requests each operation gets per kind (more finds more, and takes longer).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData, select, text

from inloop.label import add_items, create_project
from inloop.serve import MajorityClass, create_service, register
from inloop.web import create_app
from inloop.web.access import add_member
from inloop.web.auth import create_user

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

FUZZ_SEED = int(os.environ.get("INLOOP_FUZZ_SEED", "20260"))
EXAMPLES = int(os.environ.get("INLOOP_FUZZ_EXAMPLES", "10"))
#: Tables a request may touch without changing anything a user sees (tokens' last use).
_VOLATILE = {"alembic_version", "web_tokens", "web_sessions"}
PROJECT, SERVICE = "tickets", "digits"


@dataclass
class Fuzzer:
    """Sends generated cases, and records every 5xx and every refusal that changed a table."""

    client: TestClient
    engine: Engine
    headers: dict[str, str]
    tables: list[Any] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    calls: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    _state: dict[str, list[str]] | None = None

    def __post_init__(self) -> None:
        meta = MetaData()
        meta.reflect(self.engine)
        self.tables = [t for name, t in sorted(meta.tables.items()) if name not in _VOLATILE]

    def dump(self) -> dict[str, list[str]]:
        rendezvous = self.client.app.state.rendezvous  # type: ignore[attr-defined]
        rendezvous.archive.flush(5.0)  # answered predictions are archived in the background
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "postgresql":
                # One round trip: a digest of each table's rows (a query per table is slow).
                query = " UNION ALL ".join(
                    f"SELECT '{t.name}', md5(coalesce(string_agg(r::text, ',' ORDER BY r::text),"
                    f" '')) FROM \"{t.name}\" AS r"
                    for t in self.tables
                )
                return {name: [digest] for name, digest in conn.execute(text(query))}
            return {t.name: sorted(map(repr, conn.execute(select(t)).all())) for t in self.tables}

    def send(self, case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        request: dict[str, Any] = {
            "headers": {**kwargs.get("headers", {}), **self.headers},
            "params": kwargs.get("params") or None,
        }
        if "json" in kwargs:
            request["json"] = kwargs["json"]
        elif kwargs.get("data") is not None:
            data = kwargs["data"]
            request["content" if isinstance(data, bytes | str) else "data"] = data
        before = self._state if self._state is not None else self.dump()
        response = self.client.request(kwargs["method"], kwargs["url"], **request)
        self.calls += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        what = f"{kwargs['method']} {kwargs['url']} {request} -> {response.status_code}"
        if response.status_code >= 500:
            self.failures.append(f"{what}: {response.text[:300]}")
        if response.status_code >= 400:
            after = self.dump()
            if after != before:
                changed = sorted(name for name in after if after[name] != before.get(name))
                self.failures.append(f"{what}: a refused request changed {changed}")
            self._state = after
        else:
            self._state = None  # it may have changed something: read the tables again


@pytest.fixture
def world(engine: Engine) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app on ``engine`` with a project, a service and a token per role."""
    tokens = {
        "admin": create_user("root", "admin", engine=engine),
        "annotator": create_user("ana", "annotator", engine=engine),
    }
    create_project(PROJECT, ["bug", "feature"], created_by="root", engine=engine)
    add_items(
        PROJECT, [{"external_id": f"t{i}", "text": f"text {i}"} for i in range(5)], engine=engine
    )
    add_member(PROJECT, "ana", added_by="root", engine=engine)
    refs = [
        register(MajorityClass(["a", "b"], [1, n]), name="m", engine=engine).ref for n in (2, 3)
    ]
    create_service(
        SERVICE,
        {"champion": refs[0], "fallback": {"label": "a"}, "schedule": {"deadline_ms": 5000}},
        created_by="root",
        reason="fuzz",
        engine=engine,
    )
    app = create_app(engine=engine, learners=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, tokens


def _known_names(path: str) -> dict[str, str]:
    if path.startswith("/v1/services/{name}"):
        return {"name": SERVICE}
    if path.startswith("/api/projects/{name}"):
        return {"name": PROJECT}
    return {}


_CASES: dict[int, list[Any]] = {}


def generated_cases(openapi: dict[str, Any]) -> list[Any]:
    """The requests to send, drawn once per run (the same for every database and role).

    Per operation: ``EXAMPLES`` that fit the schema with the real project and
    service names, as many with drawn names, and as many that do not fit it.
    """
    if FUZZ_SEED in _CASES:
        return _CASES[FUZZ_SEED]
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    cases: list[Any] = []
    schema = schemathesis.openapi.from_dict(openapi)
    kinds = [
        (GenerationMode.POSITIVE, True),
        (GenerationMode.POSITIVE, False),
        (GenerationMode.NEGATIVE, False),
    ]
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, known in kinds:
            names = _known_names(operation.path) if known else {}
            if known and not names:
                continue
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=names or None)

            @seed(FUZZ_SEED)
            @settings(
                max_examples=EXAMPLES,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def draw(case: Any) -> None:
                cases.append(case)

            try:
                draw()
            except Unsatisfiable:
                pass  # no invalid request exists for an operation without parameters
    _CASES[FUZZ_SEED] = cases
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("role", ["annotator", "admin"])
def test_no_request_gets_a_5xx_and_no_refusal_changes_anything(
    engine: Engine, world: tuple[TestClient, dict[str, str]], role: str
) -> None:
    client, tokens = world
    fuzzer = Fuzzer(client, engine, {"Authorization": f"Bearer {tokens[role]}"})
    for case in generated_cases(client.app.openapi()):  # type: ignore[attr-defined]
        fuzzer.send(case)
    print(f"{role}: {fuzzer.calls} calls, statuses {sorted(fuzzer.statuses.items())}")
    assert fuzzer.calls > 100
    assert fuzzer.failures == [], (
        f"{len(fuzzer.failures)} of {fuzzer.calls} requests failed (seed {FUZZ_SEED}):\n"
        + "\n".join(fuzzer.failures[:10])
    )
