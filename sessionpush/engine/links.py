"""Where a rendered link may point, checked on the final text.

``sessionpush check`` refuses bad links it can see in the rule; a template
can still build one from event data (``link "/{path}"`` with a path of
``/evil.example`` gives ``//evil.example``, another site). So the rendered
link is checked again before anything is sent, the way a browser would read
it: the WHATWG URL parser drops tabs and line breaks anywhere, and leading
spaces and control characters, so ``java\\tscript:`` is still script.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sessionpush.engine.rules import CompiledRule

__all__ = [
    "FORBIDDEN_SCHEMES",
    "as_read",
    "link_problem",
    "link_scheme",
    "undeclared_schemes",
]

_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):")
#: Schemes a link may never have: they run code or carry content in the
#: receiver (``check``, the app config and the send all use this one set).
FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "vbscript", "file", "blob"})
_LEADING = "".join(map(chr, range(33)))


def as_read(link: str) -> str:
    """``link`` as a browser's URL parser reads it (see the module docstring)."""
    return re.sub(r"[\t\n\r]", "", link).lstrip(_LEADING)


def link_scheme(link: str) -> str | None:
    """The scheme of ``link`` in lower case as a browser reads it, if any."""
    match = _SCHEME.match(as_read(link).lower())
    return None if match is None else match.group(1)


def link_problem(link: str, schemes: frozenset[str] | None = None) -> str | None:
    """Why ``link`` may not be sent, or None when it is an https URL, an
    app link such as ``shop://cart``, or a path on the app's own site.

    ``schemes`` are the app schemes the app's config declares; ``None``
    (development mode, no config) accepts any scheme not forbidden here.
    """
    seen = as_read(link)
    match = _SCHEME.match(seen.lower())
    if match is None:
        if seen.startswith(("//", "/\\", "\\")):
            return "it starts with // and would go to another site"
        if not seen.startswith("/"):
            return "it is neither a URL nor a path"
        return None
    scheme = match.group(1)
    if scheme in FORBIDDEN_SCHEMES:
        return f"'{scheme}:' links run code or carry content"
    if scheme == "http":
        return "it uses http, not https"
    if scheme != "https" and schemes is not None and scheme not in schemes:
        return f"the app scheme '{scheme}:' is not in the app's link_schemes"
    return None


def undeclared_schemes(
    rules: Iterable[CompiledRule], schemes: frozenset[str]
) -> list[str]:
    """``file:line:col: 'ftp:'`` for each fixed link or image of ``rules``
    whose app scheme is not in ``schemes``, in rule order."""
    found = []
    for rule in rules:
        for scheme, line, column in rule.links:
            if scheme not in schemes and scheme not in ("https", "http"):
                found.append(f"{rule.source}:{line}:{column}: '{scheme}:'")
    return found
