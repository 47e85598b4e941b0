"""Strict Params: a run's conf names only known Params, and integers are integers.

JSON Schema (draft 6 and later, Airflow's default) counts ``3.0`` as an integer, and
Airflow accepts conf keys that are not Params (they become schema-less Params), so
``{"epochs": 3.0}`` reached the entry point as ``--epochs 3.0`` (``invalid int value``,
one paid job per try) and ``{"instance_cuont": 4}`` was silently ignored.

====================  ====================================================  ============================================
check                 where Airflow 3.3 can make it                         how
====================  ====================================================  ============================================
float for integer     at trigger time (REST API, UI form, ``airflow dags    :func:`trigger_time_specs` adds ``"$schema":
                      trigger``): all go through ``create_dagrun``, which   draft-04`` to integer Params; draft 4's type
                      validates the conf with ``jsonschema.validate``, and  checker does not count ``3.0`` as an integer
                      that picks the validator from the schema's
                      ``$schema``
unknown conf key      only in a task: ``deep_merge`` adds unknown keys as   :func:`check_conf` in the first task, naming
                      schema-less Params and no setting refuses them        the key and the nearest Param (difflib)
float for integer     again in the first task, for a conf that never met    :func:`check_conf`, also inside arrays and
                      the trigger-time check                                nullable types
hyperparameter types  when the requests are built                           :func:`render_hyperparameters`: each value
                                                                            as the entry point's parser reads it
====================  ====================================================  ============================================

Every refusal is a :class:`ParamError` (an ``AirflowFailException``: a retry cannot fix
a conf) naming the Param.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

#: The meta-schema whose type checker refuses 3.0 for "integer" (draft 6+ accept it).
DRAFT_04 = "http://json-schema.org/draft-04/schema#"
#: The draft every other Param names. Its keywords that we use mean the same as in
#: jsonschema's default (2020-12), but its meta-schema is far cheaper to check, and
#: ``jsonschema.validate`` checks the schema against it on every call: Airflow validates
#: all Params when the DAG is built (every parse) and at every trigger. The DAG's 30
#: Params: 6.0 ms, against 16.6 ms under 2020-12 (``bench/dag_benchmarks.py --breakdown``).
DRAFT_07 = "http://json-schema.org/draft-07/schema#"

#: Keywords that mean the same in draft 7 as in 2020-12 (at any depth of a schema); a
#: Param using any other (``prefixItems``, ``$defs``, ``dependentRequired``, ...) is
#: refused by :func:`trigger_time_specs` rather than silently changing meaning.
_DRAFT_07_SAFE = frozenset(
    {"default", "type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "const", "title",
     "description", "items", "uniqueItems", "minItems", "maxItems", "pattern", "minLength", "maxLength", "format",
     "multipleOf", "properties", "additionalProperties", "propertyNames", "minProperties", "maxProperties",
     "required", "oneOf", "anyOf", "allOf", "not", "examples", "$schema", "section"}
)
# "section" in both: not a JSON-schema keyword (every draft ignores it), it is the
# trigger form's grouping (Airflow's Param ``section``; regional_training.plan.params.SECTIONS).
#: Subschema-valued keywords, whose contents are checked too.
_SUBSCHEMA_KEYWORDS = ("items", "additionalProperties", "propertyNames", "not")
_SUBSCHEMA_MAP_KEYWORDS = ("properties",)
_SUBSCHEMA_LIST_KEYWORDS = ("oneOf", "anyOf", "allOf")

#: Schema keywords that mean the same in draft 4 as in Airflow's default draft; an
#: integer Param using any other keyword (e.g. a numeric ``exclusiveMinimum``, which is
#: a boolean in draft 4) is refused by :func:`trigger_time_specs` rather than
#: silently changing meaning.
_DRAFT_04_SAFE = frozenset(
    {"default", "type", "minimum", "maximum", "enum", "title", "description", "items", "uniqueItems",
     "minItems", "maxItems", "pattern", "minLength", "maxLength", "format", "multipleOf", "$schema", "section"}
)

#: The type the entry point's parser (images/training/resnet_hvd/train.py) gives each
#: hyperparameter Param's argument. ``tests/unit/runtime/test_strict_params.py`` checks this
#: against the real parser, so a change there fails here.
HYPERPARAMETER_TYPES: dict[str, type] = {
    "model": str,
    "num_classes": int,
    "epochs": int,
    "max_steps": int,
    "batch_size": int,
    "learning_rate": float,
    "lr_schedule": str,
    "warmup_epochs": float,
    "image_size": int,
    "log_every": int,
}


class ParamError(AirflowFailException):
    """A conf that names an unknown Param or gives a value of the wrong type (no retry)."""


def _types(spec: Mapping[str, Any]) -> set[str]:
    declared = spec.get("type")
    if declared is None:
        return set()
    return {declared} if isinstance(declared, str) else set(declared)


def _float_for_integer(path: str, value: Any, spec: Mapping[str, Any]) -> str | None:
    """The path of the first float given where ``spec`` wants an integer, or ``None``."""
    types = _types(spec)
    if isinstance(value, float) and "integer" in types and "number" not in types:
        return path
    if isinstance(value, list) and isinstance(spec.get("items"), Mapping):
        for index, item in enumerate(value):
            found = _float_for_integer(f"{path}[{index}]", item, spec["items"])
            if found:
                return found
    return None


def check_conf(conf: Mapping[str, Any] | None, specs: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a conf key that is not a Param, or a float for an integer Param.

    :param conf: the raw ``dag_run.conf`` (not ``params``, where defaults hide what was sent).
    :param specs: ``regional_training.plan.params.param_specs()``.
    :raises ParamError: naming the key (and the nearest known Param) or the Param.
    """
    if not conf:
        return
    known = sorted(specs)
    unknown = sorted(key for key in conf if key not in specs)
    if unknown:
        import difflib  # only for this error: the DAG's parse imports this module

        parts = []
        for key in unknown:
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            parts.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        raise ParamError(
            f"unknown Param(s) in the run's conf: {', '.join(parts)}; known Params: {', '.join(known)}"
        )
    for key in sorted(conf):
        found = _float_for_integer(key, conf[key], specs[key])
        if found:
            raise ParamError(
                f"param {key!r}: {found} is a number with a fraction part or a decimal point "
                f"({_value_at(conf[key], found, key)!r}); it must be an integer"
            )


def _value_at(value: Any, path: str, key: str) -> Any:
    for part in path[len(key):].strip("[]").split("]["):
        if part:
            value = value[int(part)]
    return value


def _keywords(schema: Mapping[str, Any]) -> set[str]:
    """Every keyword used in ``schema``, its subschemas included."""
    found = set(schema)
    subschemas: list[Any] = [schema.get(k) for k in _SUBSCHEMA_KEYWORDS]
    for key in _SUBSCHEMA_MAP_KEYWORDS:
        subschemas += list((schema.get(key) or {}).values())
    for key in _SUBSCHEMA_LIST_KEYWORDS:
        subschemas += list(schema.get(key) or ())
    for sub in subschemas:
        if isinstance(sub, Mapping):
            found |= _keywords(sub)
    return found


def trigger_time_specs(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``specs``, each naming the JSON-schema draft it is validated under.

    Integer Params get draft 4, so Airflow itself refuses ``3.0`` at trigger time (the
    REST API answers 400 naming the Param; the UI form and ``airflow dags trigger`` go
    through the same ``create_dagrun`` validation). Every other Param gets draft 7
    (:data:`DRAFT_07`: the same meaning, a cheaper check at every parse and trigger).
    A keyword whose meaning would change is refused, naming the Param.

    Use as ``params={name: Param(**spec) for name, spec in trigger_time_specs(param_specs()).items()}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, spec in specs.items():
        spec = dict(spec)
        if "integer" in _types(spec) or "integer" in _types(spec.get("items") or {}):
            unsafe = sorted(set(spec) - _DRAFT_04_SAFE)
            if unsafe:
                raise ValueError(f"param {name!r}: keyword(s) {unsafe} differ in draft 4; cannot make it strict")
            spec["$schema"] = DRAFT_04
        else:
            unsafe = sorted(_keywords(spec) - _DRAFT_07_SAFE)
            if unsafe:
                raise ValueError(f"param {name!r}: keyword(s) {unsafe} differ in draft 7; cannot name it")
            spec["$schema"] = DRAFT_07
        out[name] = spec
    return out


class ReadOnlySchema(dict):  # type: ignore[type-arg]
    """A Param's schema that deep-copies as itself and refuses changes.

    Airflow deep-copies the DAG's Params for each class in an operator's hierarchy as it
    is built (``BaseOperator``'s ``apply_defaults`` calls ``get_merged_defaults`` once per
    decorated ``__init__``): 37 copies of 30 Params per parse of this DAG, most of it in
    the schemas (enums, titles, help texts). Nothing changes a schema after the DAG is
    built, and this one cannot be changed, so a copy may share it. Serialized, it is a
    plain JSON object like any other (``tests/unit/runtime/test_strict_params.py``).
    """

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> ReadOnlySchema:
        return self

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a Param's schema is read-only once the DAG is built")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]


def dag_params(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The DAG's Params: :func:`trigger_time_specs` of ``specs``, each schema read-only
    (:class:`ReadOnlySchema`)."""
    from airflow.sdk import Param

    params = {}
    for name, spec in trigger_time_specs(specs).items():
        given = {key: spec[key] for key in ("default", "description") if key in spec}
        schema = {key: value for key, value in spec.items() if key not in given}
        params[name] = Param(**given, schema=ReadOnlySchema(schema))
    return params


def _render_one(name: str, value: Any, kind: type) -> str:
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"param {name!r}: {value!r} is not an integer")
        return str(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ParamError(f"param {name!r}: {value!r} is not a finite number")
        # repr: the shortest text that parses back to the same float ("0.1", "1e-05").
        return repr(float(value))
    if not isinstance(value, str):
        raise ParamError(f"param {name!r}: {value!r} is not a string")
    return value


def render_hyperparameters(training: Mapping[str, Any]) -> dict[str, str]:
    """Each hyperparameter as the text the entry point's parser expects (keys sorted).

    ``training`` is ``params.training_hyperparameters(params)`` (unset optional values
    already left out). An integer argument gets ``"3"`` (never ``"3.0"``), a float
    argument a float literal, a string itself.
    """
    out = {}
    for name in sorted(training):
        if name not in HYPERPARAMETER_TYPES:
            raise ParamError(f"param {name!r} is not a hyperparameter of the entry point")
        out[name] = _render_one(name, training[name], HYPERPARAMETER_TYPES[name])
    return out
