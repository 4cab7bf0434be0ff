"""The root of every error sessionpush raises on purpose.

::

    SessionpushError
     +-- ConfigError          a bad option or configuration key: refuse to start
     +-- RulesError           a rule file does not check (sessionpush.dsl.errors)
     +-- StoreError           the store cannot be opened or used (store.errors)
     +-- ReplayFormatError    a recorded data file cannot be read (replay.formats)
     +-- ProtocolError        a client frame is malformed (gateway.protocol)
     +-- NoSessionError       a frame needs a session (engine.core)
     +-- AuthError            a connection may not open a session (gateway.auth)

Errors from the libraries underneath (Lark, sqlite3, msgspec) are translated
into these at the boundary and chained with ``from``.
"""

from __future__ import annotations

__all__ = ["ConfigError", "SessionpushError"]


class SessionpushError(Exception):
    """Base class of every error sessionpush raises on purpose."""


class ConfigError(SessionpushError):
    """A configuration value is wrong; the message names the key and a fix."""
