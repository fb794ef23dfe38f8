"""Request validation that names the offending field, compiles each schema once and refuses
text PostgreSQL cannot store.

connexion's own ParameterValidator answers a bad path or query value with the whole jsonschema
error dump (schema included) and builds a new validator for every parameter of every request;
this one plugs into connexion's ``validator_map`` and answers ``limit: 101 is greater than the
maximum of 100``. :class:`RequestValidation` is connexion's validation middleware with each
bodiless operation's parameter validator built once rather than per request, and a body
without a Content-Type (or with one the operation does not accept) refused with a 415 that says
what to send (:class:`~chassis.middleware.media_types.UnsupportedMediaType`).

A NUL character or a lone surrogate (``\\ud800``) is a valid JSON escape, but PostgreSQL text
cannot hold it (nor can UTF-8 encode a lone surrogate): the insert or the query fails, which
would be a 500. Parameters and JSON bodies carrying one are a 400 naming the field instead,
whatever the database.
"""

from __future__ import annotations

import logging
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem
from connexion.lifecycle import ConnexionRequest
from connexion.middleware.request_validation import (
    RequestValidationAPI,
    RequestValidationMiddleware,
    RequestValidationOperation,
)
from connexion.operations import AbstractOperation, OpenAPIOperation
from connexion.utils import is_null, is_nullable, split_content_type
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError
from starlette.types import Receive, Scope, Send

from chassis.middleware.media_types import UnsupportedMediaType
from chassis.private_apis import set_parsed_query

_compiled: dict[int, tuple[dict[str, Any], Draft4Validator]] = {}
_connexion_log = logging.getLogger("connexion.validators.parameter")
NUL_REFUSED = "text must not contain NUL characters (\\u0000) or lone surrogates"


class NamingParameterValidator(ParameterValidator):  # type: ignore[misc]
    def validate(self, scope: Scope) -> None:
        _connexion_log.debug("%s validating parameters...", scope.get("path"))  # as connexion
        request = ConnexionRequest(scope, uri_parser=self.uri_parser)
        if not scope.get("query_string"):
            # What parsing an empty query string resolves to, without parsing it.
            set_parsed_query(request, {})
        self.validate_request(request)

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
            if _nul_at(value) is not None:
                return f"{name}: {NUL_REFUSED}"
            return None
        if param.get("required"):
            return f"{name}: missing {parameter_type} parameter"
        return None


class TextSafeJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    """connexion's JSON body validation, then no NUL in any string of the body.

    An optional body (``required: false``) may be absent: connexion refuses a missing body
    with "Request body must not be empty" unless its schema is nullable.
    """

    def _validate(self, body: Any) -> dict[str, Any] | None:
        if body is None and not self._required:
            return None
        validated: dict[str, Any] | None = super()._validate(body)
        where = _nul_at(body)
        if where is not None:
            raise BadRequestProblem(detail=f"{where or 'body'}: {NUL_REFUSED}")
        return validated


def body_validators() -> MediaTypeDict:
    """connexion's request body validators, with :class:`TextSafeJSONBodyValidator` for JSON."""
    validators = MediaTypeDict(VALIDATOR_MAP["body"])
    validators["*/*json"] = TextSafeJSONBodyValidator
    return validators


def _nul_at(value: Any, path: str = "") -> str | None:
    """The path (``items[2].title``) of the first string no database text can hold, or None."""
    if isinstance(value, str):
        return path if _unstorable(value) else None
    if isinstance(value, dict):
        children: Any = (
            (f"{path}.{key}" if path else str(key), item) for key, item in value.items()
        )
    elif isinstance(value, list):
        children = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for child_path, child in children:
        found = _nul_at(child, child_path)
        if found is not None:
            return found
    return None


def _unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return True
    return False


def _validator(param: dict[str, Any]) -> Draft4Validator:
    # Parameter dicts live as long as the loaded spec, so their id is a stable key; the dict
    # is kept alongside so that the id cannot be reused by another object.
    entry = _compiled.get(id(param))
    if entry is None or entry[0] is not param:
        schema = param.get("schema", param)
        entry = (param, Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER))
        _compiled[id(param)] = entry
    return entry[1]


class ValidationOperation(RequestValidationOperation):  # type: ignore[misc]
    """connexion's request validation of one operation, with its parameter validator built once.

    connexion builds a URI parser and a parameter validator for every request. For an operation
    without a request body (whose validation is the parameters' alone: no content type is
    checked, no body read) this one validates with a pair made at start-up; both are stateless,
    each request gets its own parsed view. Operations with a body go through connexion's own
    code, except for the media type: connexion took a body without a Content-Type for the
    operation's first type (validated it as JSON, then the handler got raw bytes: a 500); here
    that is a 415 listing the accepted types, like a type the operation does not accept. With
    neither a type nor a body, connexion's guess stands: an optional body is absent, a required
    one missing (400).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        operation = self._operation
        self._bodiless = isinstance(operation, OpenAPIOperation) and not operation.request_body
        uri_parser = operation.uri_parser_class(operation.parameters, operation.body_definition())
        self._parameters = self._validator_map["parameter"](
            operation.parameters,
            uri_parser=uri_parser,
            strict_validation=self.strict_validation,
            security_query_params=self.security_query_params,
        )
        self._consumes = list(operation.consumes)
        self._exact = frozenset(kind.lower() for kind in self._consumes)
        self._accepted = MediaTypeDict({kind.lower(): None for kind in self._consumes})

    def extract_content_type(self, headers: list[tuple[bytes, bytes]]) -> tuple[str, str]:
        """The request's media type (in lower case) and charset, as connexion's method reads
        them (whose header lookup alone took 5 µs: it builds a typing alias on every call)."""
        content_type = next((value for name, value in headers if name == b"content-type"), None)
        mime_type, encoding = split_content_type(
            None if content_type is None else content_type.decode("latin-1")
        )
        mime_type = (mime_type or "").strip().lower()
        if not mime_type:
            if _carries_body(headers):
                raise UnsupportedMediaType(None, self._consumes, method=self._operation.method)
            mime_type = self._consumes[0] if self._consumes else "application/octet-stream"
        return mime_type, encoding or "utf-8"

    def validate_mime_type(self, mime_type: str) -> None:
        if mime_type in self._exact:
            return
        if self._consumes and mime_type.lower() not in self._accepted:  # a media range
            raise UnsupportedMediaType(mime_type, self._consumes, method=self._operation.method)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._bodiless:
            await super().__call__(scope, receive, send)
            return
        self._parameters.validate(scope)
        await self.next_app(scope, receive, send)


def _carries_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request has a body, as connexion decides it (a Content-Length above 0); a
    chunked one reaches it with its length declared (RequestBodyMiddleware)."""
    for name, value in headers:
        if name == b"content-length":
            return value.strip().isdigit() and int(value) > 0
        if name == b"transfer-encoding":
            return True
    return False


class ValidationApi(RequestValidationAPI):  # type: ignore[misc]
    def make_operation(self, operation: AbstractOperation) -> ValidationOperation:
        return ValidationOperation(
            self.next_app,
            operation=operation,
            strict_validation=self.strict_validation,
            validator_map=self.validator_map,
        )


class RequestValidation(RequestValidationMiddleware):  # type: ignore[misc]
    """connexion's RequestValidationMiddleware with :class:`ValidationOperation`."""

    api_cls = ValidationApi
