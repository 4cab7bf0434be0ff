"""The rule language: parse ``.rules`` text, check it, compile it.

``load_ruleset`` is the one call the rest of sessionpush needs: it reads
files and directories, reports every error of every file at once as a
:class:`~sessionpush.dsl.errors.RulesError`, and compiles what checks into
a :class:`~sessionpush.engine.rules.RuleSet` whose version is a digest of
the rule text, so every process running the same rules reports the same
version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from sessionpush.dsl.compile import compile_rules
from sessionpush.dsl.errors import Diagnostic, RulesError
from sessionpush.dsl.load import load_paths
from sessionpush.engine.rules import RuleSet

__all__ = ["Diagnostic", "RulesError", "load_ruleset"]


def load_ruleset(paths: Sequence[str]) -> RuleSet:
    """Load, check and compile the ``.rules`` files under ``paths``."""
    files = load_paths(list(paths))
    digest = hashlib.sha256()
    for rule_file in files:
        digest.update(Path(rule_file.path).read_bytes())
    return compile_rules(files, version=digest.hexdigest()[:12])
