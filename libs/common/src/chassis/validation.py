"""Request parameter validation that names the offending parameter and compiles each schema once.

connexion's own ParameterValidator answers a bad path or query value with the whole jsonschema
error dump (schema included) and builds a new validator for every parameter of every request;
this one plugs into connexion's ``validator_map`` and answers ``limit: 101 is greater than the
maximum of 100``.
"""

from __future__ import annotations

from typing import Any

from connexion.utils import is_null, is_nullable
from connexion.validators import ParameterValidator
from jsonschema import Draft4Validator, ValidationError

_compiled: dict[int, tuple[dict[str, Any], Draft4Validator]] = {}


class NamingParameterValidator(ParameterValidator):  # type: ignore[misc]
    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        name = param.get("name", param_name)
        if is_nullable(param) and is_null(value):
            return None
        if value is not None:
            try:
                _validator(param).validate(value)
            except ValidationError as exc:
                return f"{name}: {exc.message}"
            return None
        if param.get("required"):
            return f"{name}: missing {parameter_type} parameter"
        return None


def _validator(param: dict[str, Any]) -> Draft4Validator:
    # Parameter dicts live as long as the loaded spec, so their id is a stable key; the dict
    # is kept alongside so that the id cannot be reused by another object.
    entry = _compiled.get(id(param))
    if entry is None or entry[0] is not param:
        schema = param.get("schema", param)
        entry = (param, Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER))
        _compiled[id(param)] = entry
    return entry[1]
