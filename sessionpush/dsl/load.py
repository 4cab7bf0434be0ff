"""Reading rule files from disk: the whole rule set, or every reason it fails.

A server loads a rule set only if all of it checks, and ``sessionpush
check`` shows every problem of every file in one run: both go through
:func:`load_paths`, which parses and checks each file and collects the
diagnostics instead of stopping at the first bad file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TextIO

from sessionpush.dsl import tree as t
from sessionpush.dsl.check import check_files
from sessionpush.dsl.errors import Diagnostic, RulesError
from sessionpush.dsl.parse import parse_with_diagnostics

__all__ = ["RULES_SUFFIX", "load_paths", "run_check", "run_fmt"]

RULES_SUFFIX = ".rules"


@dataclass
class _Loaded:
    files: list[t.RuleFile] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    file_count: int = 0


def load_paths(paths: Sequence[str]) -> list[t.RuleFile]:
    """Parse and check rule files and directories of them.

    Args:
        paths: Files, and directories searched recursively for ``*.rules``
            files (in sorted order; hidden directories are skipped). A file
            named twice is read once.

    Returns:
        Every file's rules, in the order the paths were given.

    Raises:
        RulesError: Any file is missing, unreadable, does not parse or does
            not check; holds the diagnostics of every file.
    """
    loaded = _load(paths)
    errors = [d for d in loaded.diagnostics if d.severity == "error"]
    if errors:
        raise RulesError(errors)
    return loaded.files


def run_check(paths: Sequence[str], out: TextIO) -> int:
    """Check rule files and report, as ``sessionpush check`` does.

    Prints each diagnostic (location, the line, carets, hint) with a blank
    line between them, then a summary: ``3 files, 12 rules, 0 errors``.

    Args:
        paths: As for :func:`load_paths`.
        out: Where the report goes.

    Returns:
        The exit status: 1 if anything is wrong, 0 otherwise.
    """
    loaded = _load(paths)
    for diagnostic in loaded.diagnostics:
        out.write(diagnostic.render() + "\n\n")

    rule_count = sum(len(rule_file.rules) for rule_file in loaded.files)
    errors = sum(1 for d in loaded.diagnostics if d.severity == "error")
    warnings = len(loaded.diagnostics) - errors
    summary = (
        f"{_count(loaded.file_count, 'file')}, {_count(rule_count, 'rule')}, "
        f"{_count(errors, 'error')}"
    )
    if warnings:
        summary += f", {_count(warnings, 'warning')}"
    out.write(summary + "\n")
    return 1 if errors else 0


def run_fmt(paths: Sequence[str], out: TextIO, *, check: bool = False) -> int:
    """Format rule files in place, as ``sessionpush fmt`` does.

    A file that does not parse is reported and left as it is; the others
    are still formatted.

    Args:
        paths: As for :func:`load_paths`.
        out: Where the report goes.
        check: Change nothing; list the files that formatting would change.

    Returns:
        The exit status: 1 if a file does not parse or, with ``check``,
        would change; 0 otherwise.
    """
    from sessionpush.dsl.format import format_text

    problems: list[Diagnostic] = []
    changed: list[str] = []
    for name in _rule_files(paths, problems):
        text = _read(name, problems)
        if text is None:
            continue
        try:
            formatted = format_text(text, name)
        except RulesError as error:
            problems.extend(error.diagnostics)
            continue
        if formatted == text:
            continue
        changed.append(name)
        if not check:
            with open(name, "w", encoding="utf-8", newline="") as handle:
                handle.write(formatted)
    for diagnostic in problems:
        out.write(diagnostic.render() + "\n\n")
    verb = "would reformat" if check else "reformatted"
    for name in changed:
        out.write(f"{verb} {name}\n")
    out.write(f"{_count(len(changed), 'file')} {verb}\n")
    return 1 if problems or (check and changed) else 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _load(paths: Sequence[str]) -> _Loaded:
    loaded = _Loaded()
    lines: dict[str, list[str]] = {}
    for name in _rule_files(paths, loaded.diagnostics):
        loaded.file_count += 1
        text = _read(name, loaded.diagnostics)
        if text is None:
            continue
        lines[name] = text.split("\n")
        rule_file, problems = parse_with_diagnostics(text, name)
        loaded.files.append(rule_file)
        loaded.diagnostics.extend(problems)

    # The checker works on trees; the rendered errors need the lines back.
    for problem in check_files(loaded.files):
        file_lines = lines.get(problem.path, [])
        found = 0 < problem.line <= len(file_lines)
        line = file_lines[problem.line - 1] if found else None
        loaded.diagnostics.append(replace(problem, source_line=line))

    order = {rule_file.path: i for i, rule_file in enumerate(loaded.files)}
    loaded.diagnostics.sort(key=lambda d: (order.get(d.path, -1), d.line, d.column))
    return loaded


def _rule_files(paths: Sequence[str], problems: list[Diagnostic]) -> list[str]:
    found: list[str] = []
    seen: set[str] = set()

    def add(name: str) -> None:
        key = os.path.realpath(name)
        if key not in seen:
            seen.add(key)
            found.append(name)

    for name in paths:
        if os.path.isdir(name):
            inside = _walk(name)
            if not inside:
                problems.append(
                    _whole_file(
                        name,
                        f"no {RULES_SUFFIX} files in this directory",
                        f"rule files end in {RULES_SUFFIX}",
                    )
                )
            for each in inside:
                add(each)
        elif os.path.exists(name):
            add(name)
        else:
            problems.append(
                _whole_file(
                    name, "no such file or directory", "check the path and its spelling"
                )
            )
    return found


def _walk(directory: str) -> list[str]:
    # os.walk does not follow links to directories: a link loop cannot hang
    # a check.
    found: list[str] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(os.path.join(root, f) for f in files if f.endswith(RULES_SUFFIX))
    return sorted(found)


def _read(name: str, problems: list[Diagnostic]) -> str | None:
    try:
        with open(name, encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        problems.append(
            _whole_file(
                name,
                f"this file is not UTF-8 text (byte {exc.start} cannot be read)",
                "save it as UTF-8",
            )
        )
    except OSError as exc:
        problems.append(
            _whole_file(name, f"cannot read this file: {exc.strerror or exc}", None)
        )
    return None


def _whole_file(path: str, message: str, hint: str | None) -> Diagnostic:
    return Diagnostic(path, 0, 0, 0, message, hint)
