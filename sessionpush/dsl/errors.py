"""What a rule author sees when a rule file is wrong.

Every problem found in a ``.rules`` file, by the parser or the checker, is a
:class:`Diagnostic`: where it is (file, line, columns), what is wrong, and,
where we can tell, how to fix it. One :class:`RulesError` carries all the
diagnostics of one run, so that ``sessionpush check`` reports every error in
every file at once instead of one per attempt.

The rendered form is the one compilers made familiar::

    rules/shop.rules:14:28: unknown filter 'truncat'
        title "{search.query | truncat: 30}"
                               ^^^^^^^
    did you mean 'truncate'?
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sessionpush.errors import SessionpushError

__all__ = ["Diagnostic", "RulesError"]

# The source line is shown indented by this much, as in the design sketch.
_INDENT = "    "


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in one rule file.

    Attributes:
        path: The file, as the user named it (``rules/shop.rules``).
        line: 1-based line, or 0 when the problem is the file as a whole
            (it does not exist, it is not UTF-8).
        column: 1-based column of the first offending character, or 0.
        end_column: 1-based column just after the last offending character
            on ``line``; 0 underlines to the end of the line.
        message: What is wrong: what was expected and what came.
        hint: How to fix it, when we can tell; ``None`` otherwise.
        source_line: The text of ``line``, filled in by whoever holds the
            file's text, so that :meth:`render` can show it.
        severity: ``"error"`` stops a rule set from loading; ``"warning"``
            (a rule that can never fire, a likely misspelt event name) is
            reported and the rules still load.
    """

    path: str
    line: int
    column: int
    end_column: int
    message: str
    hint: str | None = None
    source_line: str | None = None
    severity: str = "error"

    @property
    def location(self) -> str:
        """``path:line:column``, or only the path for a whole-file problem."""
        if self.line <= 0:
            return self.path
        return f"{self.path}:{self.line}:{max(self.column, 1)}"

    def format(self, source_line: str | None) -> str:
        """Render this diagnostic against the given text of its line.

        Args:
            source_line: The file's text on :attr:`line` (without its line
                break), or ``None`` to leave out the excerpt and the carets.

        Returns:
            The header ``path:line:col: message``, then the line indented by
            four spaces with carets under the offending columns, then the
            hint; lines joined by ``\\n``, no trailing line break.
        """
        label = "warning: " if self.severity == "warning" else ""
        out = [f"{self.location}: {label}{self.message}"]
        if source_line is not None and self.line > 0:
            out.extend(self._excerpt(source_line.rstrip("\r\n")))
        if self.hint:
            out.append(self.hint)
        return "\n".join(out)

    def render(self) -> str:
        """Render against the source line this diagnostic carries, if any."""
        return self.format(self.source_line)

    def _excerpt(self, source_line: str) -> list[str]:
        # Leading indentation is dropped so that a deeply nested line still
        # reads at the same place; columns shift by what was dropped.
        stripped = source_line.lstrip(" \t")
        shift = len(source_line) - len(stripped)
        start = max(self.column - 1 - shift, 0)
        if self.end_column > self.column:
            end = self.end_column - 1 - shift
        else:
            end = len(stripped)
        end = max(min(end, len(stripped)), start + 1)

        # Tabs stay tabs under the line so that the carets line up in any
        # terminal, whatever its tab width.
        pad = "".join("\t" if char == "\t" else " " for char in stripped[:start])
        return [_INDENT + stripped, _INDENT + pad + "^" * (end - start)]


class RulesError(SessionpushError):
    """One or more rule files do not parse or do not check.

    Attributes:
        diagnostics: Every problem found, in file and line order.
    """

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        if not self.diagnostics:
            # An error with nothing to show would be our bug, not the user's.
            raise ValueError("RulesError needs at least one diagnostic")
        super().__init__(self.render())

    def render(self) -> str:
        """Every diagnostic rendered, separated by blank lines."""
        return "\n\n".join(d.render() for d in self.diagnostics)
