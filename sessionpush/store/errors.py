"""Exceptions raised by the stores.

The tree::

    StoreError            anything a store cannot do, with what to do about it

Errors from the database drivers (``sqlite3``, later Redis) are translated
into :class:`StoreError` at the store's boundary and chained with ``from``, so
callers catch one class and the original stays in the traceback.
"""

from __future__ import annotations

from sessionpush.errors import SessionpushError

__all__ = ["StoreError"]


class StoreError(SessionpushError):
    """A store could not be opened, read or written.

    The message names what was expected, what was found and how to fix it
    (for example a file written by a newer version of sessionpush).
    """
