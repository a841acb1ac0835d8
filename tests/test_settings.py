"""Settings come from INLOOP_* variables, then inloop.toml, then laptop defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from inloop.errors import ConfigError
from inloop.settings import get_settings, reset_settings


def test_defaults_live_in_inloop_home(inloop_home: Path) -> None:
    settings = get_settings()
    assert settings.home == inloop_home
    assert settings.resolved_db_url == f"sqlite:///{inloop_home / 'inloop.db'}"
    assert settings.resolved_artifacts_url == str(inloop_home / "artifacts")
    assert settings.executor == "local"
    assert settings.storage_options == {}


def test_environment_overrides_and_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INLOOP_EXECUTOR", "dask://127.0.0.1:8786")
    monkeypatch.setenv("INLOOP_MAX_WORKERS", "3")
    reset_settings()
    assert get_settings().executor == "dask://127.0.0.1:8786"
    assert get_settings().max_workers == 3
    monkeypatch.setenv("INLOOP_MAX_WORKERS", "4")
    assert get_settings().max_workers == 3  # cached until reset
    reset_settings()
    assert get_settings().max_workers == 4


def test_toml_file_is_read_below_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "inloop.toml"
    config.write_text('executor = "dask"\nmax_num_splits = 50\n')
    monkeypatch.setenv("INLOOP_CONFIG", str(config))
    reset_settings()
    assert get_settings().executor == "dask" and get_settings().max_num_splits == 50
    monkeypatch.setenv("INLOOP_MAX_NUM_SPLITS", "70")
    reset_settings()
    assert get_settings().max_num_splits == 70


def test_s3_endpoint_becomes_storage_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INLOOP_ARTIFACTS_URL", "s3://bucket/prefix")
    monkeypatch.setenv("INLOOP_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    reset_settings()
    assert get_settings().storage_options == {
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}
    }


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("INLOOP_EXECUTOR", "ray", "must be one of local, dask"),
        ("INLOOP_MAX_WORKERS", "0", "INLOOP_MAX_WORKERS"),
        ("INLOOP_MAX_NUM_SPLITS", "many", "INLOOP_MAX_NUM_SPLITS"),
    ],
)
def test_bad_values_name_the_variable_and_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    reset_settings()
    with pytest.raises(ConfigError) as info:
        get_settings()
    assert expected in str(info.value) and repr(value) in str(info.value)


def test_unknown_toml_keys_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "inloop.toml"
    config.write_text('exector = "dask"\n')
    monkeypatch.setenv("INLOOP_CONFIG", str(config))
    reset_settings()
    with pytest.raises(ConfigError, match="exector"):
        get_settings()
