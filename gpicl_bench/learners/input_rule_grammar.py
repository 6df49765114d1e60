"""How an input rule is written — parts of ``centre+basis+scale`` joined by '+', or ``standardise`` — checked
without torch, so that a bad rule in a config or training option is reported at once. What each part does is
:mod:`gpicl_bench.learners.input_rule`'s.
"""

from __future__ import annotations

from gpicl_bench.errors import UserError

LEGACY = "standardise"
PARTS = ("centre", "basis", "scale")


def parse(rule: str) -> frozenset[str]:
    """The parts of a rule written as ``centre+basis+scale`` (any subset, any order), or ``standardise``."""
    parts = frozenset(part.strip() for part in rule.split("+"))
    if parts == {LEGACY}:
        return parts
    unknown = sorted(parts - set(PARTS))
    if unknown or not rule.strip():
        raise UserError(
            f"input rule {rule!r}: use parts of {'+'.join(PARTS)} joined by '+', or {LEGACY!r}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    return parts


def check(rule: str) -> str:
    """The rule, validated (for configs and training options)."""
    parse(rule)
    return rule
