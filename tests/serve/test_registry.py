"""The model registry on SQLite and PostgreSQL: versions, lineage from flow runs, loading."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from inloop.errors import NotFoundError
from inloop.serve import (
    MajorityClass,
    ModelNotFoundError,
    ServeError,
    Threshold,
    get_version,
    list_models,
    list_versions,
    load,
    register,
)
from inloop.store import get_engine, open_artifact_store
from inloop.store.artifacts import ArtifactStore


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16.0, y[:400]


@pytest.fixture
def store() -> ArtifactStore:
    return open_artifact_store()  # in the test's INLOOP_HOME


def test_register_versions_and_load(
    db_url: str, store: ArtifactStore, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = digits
    first = LogisticRegression(C=0.05, max_iter=1000).fit(X[:200], y[:200])
    second = LogisticRegression(max_iter=1000).fit(X, y)
    v1 = register(first, name="digits", metrics={"accuracy": np.float64(0.9)}, note="baseline")
    v2 = register(second, name="digits", registered_by="ana", snapshot=7)
    assert (v1.version, v2.version) == (1, 2)
    assert v1.kind == "sklearn" and v1.classes == tuple(range(10))
    assert v1.metrics == {"accuracy": 0.9} and v1.note == "baseline"
    assert v1.flavor["class"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert v1.flavor["n_features"] == 64
    assert v1.run_pathspec is None and v1.snapshot_id is None
    assert v2.registered_by == "ana" and v2.snapshot_id == 7
    assert get_version("digits") == v2
    assert get_version("digits", 1) == v1
    assert [v.ref for v in list_versions("digits")] == ["digits@1", "digits@2"]

    for ref, estimator in (("digits", second), ("digits@1", first)):
        model = load(ref)
        np.testing.assert_array_equal(model.predict(X[200:]), estimator.predict(X[200:]))
        np.testing.assert_allclose(model.predict_proba(X[200:]), estimator.predict_proba(X[200:]))
    loaded = load(v1)
    assert (loaded.name, loaded.version) == ("digits", 1)

    register(MajorityClass(list(range(10)), np.bincount(y)), name="digits-base")
    models = list_models()
    assert [(m.name, m.latest_version, m.n_versions) for m in models] == [
        ("digits", 2, 2),
        ("digits-base", 1, 1),
    ]
    assert models[1].kinds == ("heuristic",)
    assert load("digits-base").predict(X[:3]).tolist() == [int(np.bincount(y).argmax())] * 3


def test_callables_and_heuristics_round_trip(db_url: str, store: ArtifactStore) -> None:
    offset = 0.25  # captured by value: the callable is pickled with cloudpickle

    def rule(X: np.ndarray) -> np.ndarray:
        return np.where(X[:, 0] > offset, "hi", "lo")

    v = register(rule, name="local-rule", classes=["lo", "hi"])
    assert v.kind == "callable" and v.flavor["format"] == "cloudpickle"
    model = load("local-rule")
    assert model.predict(np.array([[0.3], [0.2]])).tolist() == ["hi", "lo"]
    assert model.classes == ("lo", "hi")

    register(Threshold(0, 0.5, above="spam", below="ham"), name="spam")
    assert load("spam").predict_proba([[0.9]]).tolist() == [[0.0, 1.0]]


def test_registry_errors(db_url: str, store: ArtifactStore) -> None:
    with pytest.raises(ModelNotFoundError, match=r"No registered model 'nope'.*none yet"):
        get_version("nope")
    register(MajorityClass(["a", "b"], [1, 2]), name="base")
    with pytest.raises(ModelNotFoundError, match=r"No registered model 'nope'.*'base'"):
        load("nope")
    with pytest.raises(ModelNotFoundError, match=r"no version 3. Its versions: 1"):
        get_version("base", 3)
    assert isinstance(ModelNotFoundError("x"), LookupError)
    with pytest.raises(ServeError, match=r"'name' of a model must be.*Got 'a/b'"):
        register(len, name="a/b", classes=["a", "b"])
    with pytest.raises(ServeError, match=r"'metrics' of register.*no NaN"):
        register(len, name="ok", classes=["a", "b"], metrics={"accuracy": float("nan")})
    with pytest.raises(ServeError, match=r"'snapshot' of register must be a snapshot id"):
        register(len, name="ok", classes=["a", "b"], snapshot="s1")
    with pytest.raises(ServeError, match=r"Unknown model kind 'onnx'"):
        register(len, name="ok", classes=["a", "b"], kind="onnx")
    with pytest.raises(ServeError, match=r"artifact pathspec 'FlowName/RunId/StepName/TaskId/"):
        register("Flow/1/train", name="ok")
    with pytest.raises(NotFoundError):
        register("NoFlow/1/train/2/model", name="ok")
    with pytest.raises(ServeError, match=r"'digits@x' must be 'name@N'"):
        load("digits@x")
    with pytest.raises(ServeError, match=r"version must be an int >= 1"):
        get_version("base", 0)
    assert [m.name for m in list_models()] == ["base"]  # failed registrations left nothing


TRAIN_FLOW = """
from inloop import FlowSpec, step
from inloop.label.snapshots import snapshot
from sklearn.linear_model import LogisticRegression


class TrainFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.train)

    @step
    def train(self):
        X, y, self.snapshot_id = snapshot("tiny")
        self.model = LogisticRegression().fit(X, y)
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def test_register_from_a_flow_run_records_lineage(
    db_url: str, tmp_path: Path, store: ArtifactStore
) -> None:
    from inloop import Flow, Runner
    from inloop.label.io import import_items
    from inloop.label.projects import create_project

    engine = get_engine(db_url)
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-2, 1, (10, 3)), rng.normal(2, 1, (10, 3))])
    labels = ["neg"] * 10 + ["pos"] * 10
    create_project("tiny", ["neg", "pos"], engine=engine)
    import_items("tiny", X, labels=labels, engine=engine)
    flow_file = tmp_path / "train_flow.py"
    flow_file.write_text(textwrap.dedent(TRAIN_FLOW))
    result = Runner(flow_file, show_output=False, max_workers=1).run()
    assert result.status == "successful"
    run = Flow("TrainFlow").latest_run
    assert run is not None
    task = run["train"].task
    assert task is not None
    snapshot_id = task.data.snapshot_id

    by_artifact = register(task["model"], name="tiny", metrics={"accuracy": 1.0})
    assert by_artifact.run_pathspec == run.pathspec
    assert by_artifact.task_pathspec == task.pathspec
    assert by_artifact.artifact_name == "model"
    assert by_artifact.snapshot_id == snapshot_id
    assert by_artifact.classes == ("neg", "pos")

    by_path = register(f"{task.pathspec}/model", name="tiny")
    assert by_path.version == 2 and by_path.task_pathspec == task.pathspec
    assert by_path.snapshot_id == snapshot_id
    assert by_path.artifact_key == by_artifact.artifact_key  # same bytes, stored once

    from_object = register(task.data.model, name="tiny")  # a plain value has no lineage
    assert from_object.run_pathspec is None and from_object.snapshot_id is None

    model = load("tiny@1")
    np.testing.assert_array_equal(model.predict(X), task.data.model.predict(X))


class _Planted:
    """Unpickling it creates the file ``path``: what a swapped model blob could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")


def _swap(key: str, blob: bytes) -> None:
    """Overwrite the stored file of ``key`` in the test's artifact folder with ``blob``."""
    from inloop.settings import get_settings

    root = Path(get_settings().resolved_artifacts_url)
    (root / key[:2] / key[2:]).write_bytes(blob)


@pytest.mark.parametrize("kind", ["sklearn", "callable"])
def test_a_swapped_model_blob_is_refused_before_anything_in_it_runs(
    db_url: str, tmp_path: Path, digits: tuple[np.ndarray, np.ndarray], kind: str
) -> None:
    import pickle

    from inloop.errors import ArtifactIntegrityError
    from inloop.store.serialize import dump_chunks

    X, y = digits
    marker = tmp_path / "pwned"
    if kind == "sklearn":
        version = register(LogisticRegression(max_iter=300).fit(X, y), name="victim")
        planted = b"".join(dump_chunks(_Planted(marker)))  # the store's own format
    else:
        version = register(lambda X: ["a"] * len(X), name="victim", classes=["a", "b"])
        planted = pickle.dumps(_Planted(marker))
    assert version.flavor["format"] == ("inloop" if kind == "sklearn" else "cloudpickle")
    load(version.ref)  # fine before the swap
    _swap(version.artifact_key, planted)

    with pytest.raises(ArtifactIntegrityError) as caught:
        load(version.ref)
    message = str(caught.value)
    assert "victim@1" in message and version.artifact_key in message
    found = hashlib.sha256(planted).hexdigest()
    assert found in message and caught.value.found == found
    assert not marker.exists()  # nothing in the blob ran
