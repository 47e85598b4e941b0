"""Strict Params: unknown keys and floats for integers refused, hyperparameters typed for the parser."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st

from regional_training.plan.params import HYPERPARAMETER_PARAMS, LR_SCHEDULES, param_specs, training_hyperparameters
from regional_training.plan.training_request import sagemaker_hyperparameters
from regional_training.runtime.strict_params import (
    DRAFT_04,
    DRAFT_07,
    HYPERPARAMETER_TYPES,
    ParamError,
    check_conf,
    render_hyperparameters,
    trigger_time_specs,
)

SPECS = param_specs()
DEFAULTS = {name: spec["default"] for name, spec in SPECS.items()}


def _types(spec: dict[str, Any]) -> set[str]:
    t = spec.get("type")
    return {t} if isinstance(t, str) else set(t or ())


INTEGER_PARAMS = sorted(n for n, s in SPECS.items() if "integer" in _types(s))


# --- unknown keys ---------------------------------------------------------------------------------------------

def test_a_misspelt_param_is_refused_naming_it_and_the_nearest_param() -> None:
    with pytest.raises(ParamError, match=r"'instance_cuont' \(did you mean 'instance_count'\?\)"):
        check_conf({"instance_cuont": 4}, SPECS)


@given(key=st.text(min_size=1, max_size=30).filter(lambda k: k not in SPECS), value=st.integers())
def test_any_unknown_key_is_refused_naming_it(key: str, value: int) -> None:
    with pytest.raises(ParamError) as info:
        check_conf({**DEFAULTS, key: value}, SPECS)
    known = str(info.value).split("known Params: ", 1)[1].split(", ")
    assert repr(key) in str(info.value) and known == sorted(SPECS)


@given(name=st.sampled_from(sorted(n for n in SPECS if len(n) > 5)), data=st.data())
def test_a_one_letter_slip_is_refused_with_a_suggestion(name: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(name) - 1))
    slip = name[:at] + name[at + 1:]  # one letter dropped
    if slip in SPECS:
        return
    with pytest.raises(ParamError, match="did you mean"):
        check_conf({slip: 1}, SPECS)


# --- integers are integers ------------------------------------------------------------------------------------

@given(name=st.sampled_from(INTEGER_PARAMS), value=st.integers(-10**6, 10**6))
def test_a_float_for_an_integer_param_is_refused_naming_it(name: str, value: int) -> None:
    with pytest.raises(ParamError, match=rf"param '{name}': .*must be an integer"):
        check_conf({name: float(value)}, SPECS)
    check_conf({name: value}, SPECS)  # the type check only; bounds are the schema's job


def test_floats_inside_arrays_of_integers_are_refused() -> None:
    specs = {"sizes": {"default": [], "type": "array", "items": {"type": ["null", "integer"]}}}
    check_conf({"sizes": [1, None, 3]}, specs)
    with pytest.raises(ParamError, match=r"param 'sizes': sizes\[1\] .*\(2\.0\)"):
        check_conf({"sizes": [1, 2.0]}, specs)


@given(conf=st.fixed_dictionaries({}, optional={
    "epochs": st.integers(1, 200),
    "max_steps": st.none() | st.integers(1, 100),
    "learning_rate": st.floats(0.001, 10) | st.integers(1, 10),
    "budget_usd": st.none() | st.floats(0, 1e6) | st.integers(0, 10**6),
    "campaigns": st.lists(st.sampled_from(["a", "b", "c"]), unique=True),
    "dry_run": st.booleans(),
}))
def test_well_typed_confs_pass(conf: dict[str, Any]) -> None:
    check_conf(conf, SPECS)
    check_conf(None, SPECS)


# --- at trigger time, through Airflow's own validation ---------------------------------------------------------

def _serialized_dag():
    """The DAG as the API server holds it (serialized and back)."""
    from airflow.sdk import DAG, Param
    from airflow.serialization.serialized_objects import DagSerialization

    params = {name: Param(**spec) for name, spec in trigger_time_specs(SPECS).items()}
    with DAG("strict_params_test", schedule=None, start_date=pendulum.datetime(2026, 1, 1), params=params) as dag:
        pass
    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def _serialized_params():
    return _serialized_dag().params


def test_create_dagrun_refuses_a_float_for_an_integer_before_any_run_exists() -> None:
    """The server function behind the REST API's trigger route, the UI form and ``airflow dags trigger``."""
    from airflow.exceptions import ParamValidationError
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    with pytest.raises(ParamValidationError, match=r"Invalid input for param epochs: 3\.0 is not of type 'integer'"):
        _serialized_dag().create_dagrun(
            run_id="manual__strict", run_after=pendulum.now("UTC"), conf={"epochs": 3.0}, run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.REST_API, state=DagRunState.QUEUED,
            session=object(),  # refused before the session is touched: no run row exists
        )


def test_trigger_time_specs_make_airflow_refuse_a_float_for_an_integer() -> None:
    """``create_dagrun`` (REST API, UI, CLI) validates ``params.deep_merge(conf)``: the same call here."""
    params = _serialized_params()
    params.deep_merge({}).validate()  # defaults
    ok = params.deep_merge({"epochs": 3, "max_steps": None, "learning_rate": 1, "budget_usd": 2.5}).validate()
    assert ok["epochs"] == 3
    for conf in ({"epochs": 3.0}, {"max_steps": 5.0}, {"instance_count": 1.0}):
        (name,) = conf
        with pytest.raises(Exception, match=rf"Invalid input for param {name}: .* is not of type"):
            params.deep_merge(conf).validate()
    # Unknown keys: Airflow has no switch to refuse them; the first task must (check_conf).
    assert params.deep_merge({"instance_cuont": 4}).validate()["instance_cuont"] == 4


def test_dag_params_share_read_only_schemas_and_serialize_as_plain_params() -> None:
    """The DAG's Params (``dag_params``) copy without copying their schemas, and the API
    server holds exactly what ``Param(**spec)`` would have given it."""
    import copy
    import json

    from airflow.sdk import DAG, Param
    from airflow.serialization.serialized_objects import DagSerialization

    from regional_training.runtime.strict_params import dag_params

    def serialized(params: dict[str, Any]) -> str:
        with DAG("strict_params_test", schedule=None, start_date=pendulum.datetime(2026, 1, 1),
                 params=params) as dag:
            pass
        return json.dumps(DagSerialization.to_dict(dag), sort_keys=True)

    params = dag_params(SPECS)
    assert serialized(params) == serialized({n: Param(**s) for n, s in trigger_time_specs(SPECS).items()})
    copied = copy.deepcopy(params["epochs"])
    assert copied is not params["epochs"] and copied.schema is params["epochs"].schema
    with pytest.raises(TypeError, match="read-only"):
        params["epochs"].schema["minimum"] = 0
    with pytest.raises(TypeError, match="read-only"):
        params["epochs"].schema.update(minimum=0)


def test_integer_params_get_draft_4_the_others_draft_7_and_none_changes_meaning() -> None:
    strict = trigger_time_specs(SPECS)
    assert sorted(n for n, s in strict.items() if s.get("$schema") == DRAFT_04) == INTEGER_PARAMS
    assert sorted(n for n, s in strict.items() if s.get("$schema") == DRAFT_07) == sorted(
        set(SPECS) - set(INTEGER_PARAMS)
    )
    assert {n: {k: v for k, v in s.items() if k != "$schema"} for n, s in strict.items()} == SPECS
    with pytest.raises(ValueError, match="exclusiveMinimum"):
        trigger_time_specs({"n": {"default": 1, "type": "integer", "exclusiveMinimum": 0}})
    # A 2020-12 keyword, even nested, is refused rather than ignored under draft 7.
    with pytest.raises(ValueError, match=r"param 'p'.*prefixItems"):
        trigger_time_specs({"p": {"default": None, "type": ["null", "object"],
                                  "properties": {"xs": {"type": "array", "prefixItems": [{"type": "string"}]}}}})


def test_every_param_validates_its_default_and_refuses_a_wrong_value_under_its_draft() -> None:
    """Each Param's schema is valid under the draft it names (jsonschema checks the
    schema first), accepts its default, and still refuses a value of the wrong type."""
    import jsonschema

    for spec in trigger_time_specs(SPECS).values():
        schema = {k: v for k, v in spec.items() if k not in ("default", "description")}
        jsonschema.validate(spec["default"], schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"not": "this"} if "object" not in _types(spec) else 7, schema)


# --- hyperparameters through the real entry point's parser ----------------------------------------------------

def _train_module():
    """``resnet_hvd.train`` from images/training, loaded from its files: the training
    image's package is not installed in the Airflow venv, and sys.path stays as it is."""
    import importlib
    import importlib.util
    from pathlib import Path

    if "resnet_hvd" not in sys.modules:
        package_dir = Path(__file__).resolve().parents[3] / "images" / "training" / "resnet_hvd"
        spec = importlib.util.spec_from_file_location(
            "resnet_hvd", package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
        )
        assert spec is not None and spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules["resnet_hvd"] = package
        spec.loader.exec_module(package)
    return importlib.import_module("resnet_hvd.train")


def toolkit_argv(hyperparameters: dict[str, str]) -> list[str]:
    """The entry point's argv as the sagemaker-training toolkit (4.x) builds it: the
    ``sagemaker_*`` settings are taken out, every other value is JSON-decoded when it
    parses as JSON ("3.0" -> 3.0, "10" -> 10) and passed back as ``--key str(value)``."""
    argv = []
    for key in sorted(hyperparameters):
        if key.startswith("sagemaker_"):
            continue
        value: Any = hyperparameters[key]
        with contextlib.suppress(ValueError):
            value = json.loads(value)
        argv += [f"--{key}", str(value)]
    return argv


def _bound_values() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []
    for name in HYPERPARAMETER_PARAMS:
        spec = SPECS[name]
        values = [spec["default"], spec.get("minimum"), spec.get("maximum"), *spec.get("enum", [])]
        if "exclusiveMinimum" in spec:
            values.append(spec["exclusiveMinimum"] + 1e-8)
        cases += [(name, v) for v in values if v is not None]
    return cases


def test_the_type_table_matches_the_real_parser() -> None:
    parser = _train_module().build_parser()
    actions = {a.dest: a for a in parser._actions}
    assert set(HYPERPARAMETER_TYPES) == set(HYPERPARAMETER_PARAMS)
    for name, kind in HYPERPARAMETER_TYPES.items():
        action = actions[name]
        assert (action.type or str) is kind, f"{name}: parser type {action.type}, table {kind}"
        assert f"--{name}" in action.option_strings  # SageMaker passes the Param's own spelling
    assert tuple(actions["lr_schedule"].choices) == LR_SCHEDULES


@pytest.mark.parametrize(("name", "value"), _bound_values(), ids=lambda v: str(v))
def test_every_param_default_and_bound_parses_in_train_py(name: str, value: Any) -> None:
    train = _train_module()
    params = {**DEFAULTS, name: value}
    hyperparameters = sagemaker_hyperparameters(
        render_hyperparameters(training_hyperparameters(params)), processes_per_host=8
    )
    for argv in (toolkit_argv(hyperparameters),
                 [t for k, v in hyperparameters.items() if not k.startswith("sagemaker_") for t in (f"--{k}", v)]):
        args = train.parse_args([*argv, "--synthetic"])
        assert getattr(args, name) == value
        assert type(getattr(args, name)) is HYPERPARAMETER_TYPES[name]


def test_the_old_rendering_of_a_float_fails_in_the_parser_and_the_new_one_refuses_it() -> None:
    train = _train_module()
    with pytest.raises(SystemExit):
        train.parse_args(["--epochs", "3.0", "--synthetic"])  # what {"epochs": 3.0} became
    with pytest.raises(ParamError, match=r"param 'epochs': 3\.0 is not an integer"):
        render_hyperparameters({"epochs": 3.0})
    with pytest.raises(ParamError, match="not a hyperparameter"):
        render_hyperparameters({"instance_count": 1})
    assert render_hyperparameters({"learning_rate": 1, "warmup_epochs": 0, "model": "resnet50"}) == {
        "learning_rate": "1.0", "model": "resnet50", "warmup_epochs": "0.0"}
