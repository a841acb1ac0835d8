"""Every exception inloop raises on purpose.

Each message names the value that was wrong (quoted with :func:`quote`, at
most a couple of hundred characters), what would be accepted, and the next
thing to try. Catch ``InloopError`` to catch them all::

    InloopError
    ├── ConfigError                 a setting or inloop.toml value is invalid
    │   └── MissingExtraError       a setting needs an optional extra that is not installed
    ├── StoreError                  the metadata database or artifact store failed
    │   ├── ArtifactNotFoundError   no artifact with that key is stored
    │   ├── ArtifactIntegrityError  a blob's bytes do not hash to its key (swapped, corrupt)
    │   └── SchemaError             the database schema is newer than this inloop
    ├── FlowError                   a flow could not be defined or run
    │   ├── FlowDefinitionError     the flow's graph breaks a rule (``check``)
    │   ├── ParameterError          a parameter value is missing or has the wrong type
    │   ├── TaskFailedError         a task failed after its retries
    │   ├── ResourceUnavailableError  no worker offers what ``@resources`` asks for
    │   └── ResumeError             the run to resume cannot be found or reused
    ├── ClientError                 a lookup through the client API failed
    │   ├── NotFoundError           no flow, run, step, task or artifact at that path
    │   └── NamespaceMismatchError  the object exists but not in the current namespace
    │
    │   Each part defines its own errors next to the code that raises them:
    ├── flow.spec.MergeArtifactsError, flow.task.TaskTimeoutError   (FlowError)
    ├── label.projects.LabelError   a labeling request is invalid (also a ValueError)
    │   ├── LabelNotFoundError      no such project, item, lease or snapshot
    │   └── label.learner.LearnerError ── web.learning.ModelSettingsError
    ├── label.strategies.StrategyError, label.agreement.AgreementError,
    │   label.audit.AuditError      bad input to the numeric tools (also ValueErrors)
    ├── serve.models.ServeError     a model, service or request is invalid (also a ValueError)
    │   ├── ModelNotFoundError      no model or version by that name
    │   ├── policy.PolicyError      a policy or a change to it is invalid
    │   ├── policy.ServiceNotFoundError  no service by that name
    │   ├── limits.InvalidRequestError  the instances do not fit (HTTP 400)
    │   │   └── limits.RequestTooLargeError  past a service's limits (HTTP 413)
    │   ├── rendezvous.NoAnswerError  no model answered and the fallback failed (HTTP 503)
    │   ├── destinations.DestinationRefusedError  a webhook URL leads to a private address
    │   └── archive.RequestNotFoundError  no archived request with that id
    ├── web.auth.AuthError (NoSuchUserError, NoSuchTokenError),
    │   web.auth.UserExistsError, web.auth.TokenExistsError, web.auth.LastAdminError,
    │   web.access.AccessError      users, tokens and project access
    └── testing.ContractError       a pluggable piece breaks its contract
"""

from __future__ import annotations

__all__ = [
    "ArtifactNotFoundError",
    "ClientError",
    "ConfigError",
    "FlowDefinitionError",
    "FlowError",
    "InloopError",
    "NamespaceMismatchError",
    "NotFoundError",
    "ParameterError",
    "ResourceUnavailableError",
    "ResumeError",
    "SchemaError",
    "StoreError",
    "TaskFailedError",
    "quote",
]

#: How many characters of a value an error message quotes at most.
QUOTE_CHARS = 200


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters.

    A value a user sent may be megabytes long; a message quotes its start and
    says how long it was, so the answer stays small and still shows which value
    it was.

    >>> quote("cat")
    "'cat'"
    >>> quote("x" * 1000, limit=12)
    "'xxxxxxxxxxx… (1,000 characters in all)"
    """
    if isinstance(value, str) and len(value) > limit:
        return f"{value[: limit - 1]!r}"[:-1] + f"… ({len(value):,} characters in all)"
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text):,} characters in all)"


class InloopError(Exception):
    """Base of every error inloop raises on purpose."""


class ConfigError(InloopError, ValueError):
    """A setting (``INLOOP_*`` variable or ``inloop.toml`` value) is invalid."""


class MissingExtraError(ConfigError, ImportError):
    """A setting chose a backend whose optional package is not installed.

    The message is one line naming the ``pip install`` to run. It is also an
    ``ImportError``, so code that tries an import and falls back still works.

    >>> err = MissingExtraError("redis", "INLOOP_STREAM_URL", ImportError("No module named 'x'"))
    >>> str(err).endswith('Install it with: pip install "inloop[redis]"'), err.extra
    (True, 'redis')
    """

    def __init__(self, extra: str, what: str, exc: ImportError) -> None:
        super().__init__(
            f"{what} needs the {extra!r} extra, which is not installed ({exc}). "
            f'Install it with: pip install "inloop[{extra}]"'
        )
        self.extra = extra


class StoreError(InloopError):
    """The metadata database or the artifact store failed."""


class ArtifactNotFoundError(StoreError, KeyError):
    """No artifact with the requested key is stored."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ArtifactIntegrityError(StoreError):
    """An artifact's bytes do not hash to its key: the file was swapped or is corrupt.

    ``key`` is the hash expected, ``found`` the hash of the bytes read.
    """

    def __init__(self, message: str, *, key: str, found: str) -> None:
        super().__init__(message)
        self.key = key
        self.found = found


class SchemaError(StoreError):
    """The database was migrated by a newer inloop than the one running."""


class FlowError(InloopError):
    """A flow could not be defined or run."""


class FlowDefinitionError(FlowError):
    """The flow's graph breaks a rule; the message names step, line, rule and fix."""

    def __init__(self, message: str, *, step: str | None = None, line: int | None = None):
        super().__init__(message)
        self.step = step
        self.line = line


class ParameterError(FlowError, ValueError):
    """A parameter value is missing or cannot be converted to its type."""


class TaskFailedError(FlowError):
    """A task failed after all its retries."""


class ResourceUnavailableError(FlowError):
    """No worker offers a resource that ``@resources`` asks for."""


class ResumeError(FlowError):
    """The origin run of a ``resume`` cannot be found or reused."""


class ClientError(InloopError):
    """A lookup through the client API failed."""


class NotFoundError(ClientError, KeyError):
    """No flow, run, step, task or artifact exists at the given path."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NamespaceMismatchError(ClientError):
    """The object exists, but not in the current namespace."""
