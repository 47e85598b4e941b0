"""A small IAM policy evaluator for tests: does a set of policies allow a request?

Covers what the documents here use: Allow/Deny (explicit deny wins), Action/NotAction
and Resource/NotResource with ``*``/``?`` wildcards (actions case-insensitive, ARNs
matched segment by segment, case-sensitive), Principal (trust policies), and the
condition operators String*/Arn*/Bool with ``IfExists`` and ``ForAnyValue:`` /
``ForAllValues:``. Not a full IAM implementation (no policy variables, no numeric or
date operators, no SCPs or boundaries): anything it does not know is an error, never a
silent allow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any


class UnsupportedPolicy(ValueError):
    """The policy uses something this evaluator does not implement."""


@cache
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{regex}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return bool(_glob(pattern, ignore_case).match(value))


def arn_match(pattern: str, arn: str) -> bool:
    """IAM ARN matching: ``*`` alone matches anything; else the six ARN segments match
    one by one (a wildcard does not cross the first five colons)."""
    if pattern == "*":
        return True
    p_parts, a_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(p_parts) != 6 or len(a_parts) != 6:
        return pattern == arn
    return all(glob_match(p, a) for p, a in zip(p_parts, a_parts, strict=True))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


_BASE_OPERATORS = {
    "StringEquals": (lambda p, v: p == v, False),
    "StringNotEquals": (lambda p, v: p == v, True),
    "StringEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), True),
    "StringLike": (lambda p, v: glob_match(p, v), False),
    "StringNotLike": (lambda p, v: glob_match(p, v), True),
    "ArnEquals": (lambda p, v: p == v, False),
    "ArnNotEquals": (lambda p, v: p == v, True),
    "ArnLike": (arn_match, False),
    "ArnNotLike": (arn_match, True),
    "Bool": (lambda p, v: str(p).lower() == str(v).lower(), False),
}


def _condition_holds(operator: str, key: str, policy_values: Any, context: Mapping[str, Any]) -> bool:
    set_op = None
    if ":" in operator:
        set_op, operator = operator.split(":", 1)
        if set_op not in ("ForAnyValue", "ForAllValues"):
            raise UnsupportedPolicy(f"condition set operator {set_op!r}")
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    if base not in _BASE_OPERATORS:
        raise UnsupportedPolicy(f"condition operator {operator!r}")
    match, negated = _BASE_OPERATORS[base]
    wanted = [str(v) for v in _as_list(policy_values)]

    if key not in context:
        if if_exists or set_op == "ForAllValues":
            return True
        return negated
    values = [str(v) for v in _as_list(context[key])]

    def one(value: str) -> bool:
        hit = any(match(p, value) for p in wanted)
        return not hit if negated else hit

    if set_op == "ForAllValues":
        return all(one(v) for v in values)
    if set_op == "ForAnyValue" or len(values) > 1:
        return any(one(v) for v in values)
    return one(values[0])


def _principal_matches(statement: Mapping[str, Any], principal: Mapping[str, str] | None) -> bool:
    if "NotPrincipal" in statement:
        raise UnsupportedPolicy("NotPrincipal")
    if "Principal" not in statement:
        return principal is None
    if principal is None:
        raise UnsupportedPolicy("a statement with Principal in an identity policy")
    spec = statement["Principal"]
    if spec == "*":
        return True
    return any(
        glob_match(pattern, value) for kind, value in principal.items() for pattern in _as_list(spec.get(kind, []))
    )


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "Action" in statement:
        return any(glob_match(p, action, ignore_case=True) for p in _as_list(statement["Action"]))
    if "NotAction" in statement:
        return not any(glob_match(p, action, ignore_case=True) for p in _as_list(statement["NotAction"]))
    raise UnsupportedPolicy("statement without Action/NotAction")


def _resource_matches(statement: Mapping[str, Any], resource: str, principal: Mapping[str, str] | None) -> bool:
    if "Resource" in statement:
        return any(arn_match(p, resource) for p in _as_list(statement["Resource"]))
    if "NotResource" in statement:
        return not any(arn_match(p, resource) for p in _as_list(statement["NotResource"]))
    if principal is None:
        raise UnsupportedPolicy("identity-policy statement without Resource/NotResource")
    return True  # trust policies have no Resource


def statement_applies(
    statement: Mapping[str, Any],
    action: str,
    resource: str,
    context: Mapping[str, Any],
    principal: Mapping[str, str] | None = None,
) -> bool:
    known = {
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
        "Principal",
        "NotPrincipal",
    }
    if set(statement) - known:
        raise UnsupportedPolicy(f"statement keys {sorted(set(statement) - known)}")
    if not _principal_matches(statement, principal):
        return False
    if not _action_matches(statement, action) or not _resource_matches(statement, resource, principal):
        return False
    for operator, block in statement.get("Condition", {}).items():
        for key, policy_values in block.items():
            if not _condition_holds(operator, key, policy_values, context):
                return False
    return True


def is_allowed(
    policies: Iterable[Mapping[str, Any]],
    action: str,
    resource: str,
    context: Mapping[str, Any] | None = None,
    principal: Mapping[str, str] | None = None,
) -> bool:
    """True when some statement allows the request and none denies it."""
    context = context or {}
    allowed = False
    for policy in policies:
        if policy.get("Version") != "2012-10-17":
            raise UnsupportedPolicy(f"policy Version {policy.get('Version')!r}")
        for statement in _as_list(policy["Statement"]):
            if statement["Effect"] not in ("Allow", "Deny"):
                raise UnsupportedPolicy(f"Effect {statement['Effect']!r}")
            if statement_applies(statement, action, resource, context, principal):
                if statement["Effect"] == "Deny":
                    return False
                allowed = True
    return allowed
