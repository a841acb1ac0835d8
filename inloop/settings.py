"""One settings object for all of inloop.

Values come from ``INLOOP_*`` environment variables, then an ``inloop.toml`` in
the working directory (or the file named by ``INLOOP_CONFIG``), then defaults
that work on a laptop. Read them with :func:`get_settings`; never at import.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from inloop.errors import ConfigError

_EXECUTOR_SCHEMES = ("local", "dask", "dask://host:port", "tcp://host:port")


def _toml_path() -> Path:
    return Path(os.environ.get("INLOOP_CONFIG", "inloop.toml"))


class Settings(BaseSettings):
    """Where inloop keeps its state and how it runs work."""

    model_config = SettingsConfigDict(env_prefix="INLOOP_", extra="forbid")

    home: Path = Field(
        default_factory=lambda: Path.home() / ".inloop",
        description="Folder for the embedded SQLite database and artifact folder.",
    )
    db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database; default: SQLite in `home`.",
    )
    artifacts_url: str | None = Field(
        default=None,
        description="fsspec URL of the artifact store (`s3://bucket/prefix` at scale).",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="Endpoint of an S3-compatible store (MinIO, moto)."
    )
    executor: str = Field(
        default="local",
        description="`local` (worker processes), `dask` (a local Dask cluster) "
        "or `dask://host:port` (an existing scheduler).",
    )
    max_workers: int | None = Field(
        default=None, ge=1, description="Default task concurrency; default: CPU count."
    )
    max_num_splits: int = Field(
        default=10_000, ge=1, description="Largest foreach fan-out a run accepts."
    )
    stream_url: str | None = Field(
        default=None, description="Redis URL for rendezvous streams at scale."
    )
    webhook_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Loopback, link-local or private addresses, networks or host names "
        "webhooks may reach (comma-separated, e.g. `127.0.0.1,10.0.0.0/8`); others are refused.",
    )
    trusted_proxies: str | None = Field(
        default=None,
        description="Addresses of the TLS proxies in front of `inloop server` (comma-separated "
        "IPs or networks, or `*`) whose X-Forwarded-Proto and X-Forwarded-For are believed; "
        "unset: those headers are ignored.",
    )
    signin_limit: str = Field(
        default="10/minute",
        description="Failed sign-ins allowed per client address, e.g. `10/minute`, `50/hour`.",
    )
    signin_limit_all: str = Field(
        default="100/minute",
        description="Failed sign-ins allowed from all addresses together.",
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body the web app reads, in bytes (predict: see below).",
    )
    max_json_depth: int = Field(
        default=32,
        ge=2,
        le=1000,
        description="How deep lists and objects may nest in a JSON request body.",
    )
    max_predict_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest predict request body, in bytes; a service's policy may set its own.",
    )
    max_predict_instances: int = Field(
        default=10_000, ge=1, description="Most instances one predict request may carry."
    )
    max_instance_bytes: int = Field(
        default=64 * 1024,
        ge=8,
        description="Largest instance, in bytes of the array models get (8 a number, "
        "4 a character of text).",
    )
    max_batch_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=8,
        description="Largest array a predict request's instances make (texts are padded "
        "to the longest one).",
    )
    archive_journal: bool = Field(
        default=True,
        description="Journal each answered request in `home`/journal before its answer leaves, "
        "so that a server killed before archiving it archives it at its next start.",
    )
    require_services: bool = Field(
        default=False, description="Tests fail instead of skipping when a service is missing."
    )

    @field_validator("executor")
    @classmethod
    def _check_executor(cls, value: str) -> str:
        if value in ("local", "dask") or value.startswith(("dask://", "tcp://")):
            return value
        raise ValueError(
            f"INLOOP_EXECUTOR must be one of {', '.join(_EXECUTOR_SCHEMES)}. Got {value!r}."
        )

    @field_validator("webhook_allow", mode="before")
    @classmethod
    def _split_allow(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("signin_limit", "signin_limit_all")
    @classmethod
    def _check_limit(cls, value: str) -> str:
        from limits import parse  # imported only when the setting is given

        try:
            ok = parse(value).amount >= 1
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"a sign-in limit is a count per period, such as '10/minute', '100/hour' or "
                f"'5 per 10 seconds'. Got {value!r:.200}"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _toml_path()
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def resolved_db_url(self) -> str:
        """The metadata database URL, defaulting to SQLite inside ``home``."""
        return self.db_url or f"sqlite:///{self.home / 'inloop.db'}"

    @property
    def resolved_artifacts_url(self) -> str:
        """The artifact store URL, defaulting to a folder inside ``home``."""
        return self.artifacts_url or str(self.home / "artifacts")

    @property
    def storage_options(self) -> dict[str, Any]:
        """Extra fsspec options for the artifact store (the S3 endpoint, if any)."""
        if self.s3_endpoint_url and self.resolved_artifacts_url.startswith("s3://"):
            return {"client_kwargs": {"endpoint_url": self.s3_endpoint_url}}
        return {}


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        if err["type"] == "extra_forbidden":
            valid = ", ".join(sorted(Settings.model_fields))
            lines.append(f"unknown setting {field!r} in {_toml_path()}; valid settings: {valid}")
            continue
        lines.append(
            f"{field} (INLOOP_{field.upper()}): {err['msg']}; got {err.get('input')!r}. "
            f"Set it in the environment or in {_toml_path()}."
        )
    return "Invalid inloop settings:\n  " + "\n  ".join(lines)


@functools.cache
def _cached_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


def get_settings() -> Settings:
    """Return the settings for this process (read once, then cached).

    >>> get_settings().executor in ("local", "dask") or True
    True
    """
    return _cached_settings()


def reset_settings() -> None:
    """Forget the cached settings so the next :func:`get_settings` reads them again."""
    _cached_settings.cache_clear()
