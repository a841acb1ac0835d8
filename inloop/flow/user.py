"""Who is running: the user name runs are recorded under."""

from __future__ import annotations

import getpass
import os


def get_username() -> str:
    """The current user's name, looked up the way Metaflow does.

    ``INLOOP_USER`` wins, then ``USERNAME``, then the login name. Runs land in the
    namespace ``user:<name>``.
    """
    for var in ("INLOOP_USER", "USERNAME"):
        value = os.environ.get(var)
        if value:
            return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def user_namespace(username: str | None = None) -> str:
    """The namespace tag of a user: ``user:<name>``."""
    return f"user:{username or get_username()}"
