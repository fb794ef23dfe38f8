"""Who may call a secured operation: bearer JWTs checked against the OpenAPI document's scopes.

An operation is secured by its document, never by code:

    components:
      securitySchemes:
        bearerAuth: {type: http, scheme: bearer, bearerFormat: JWT}
    paths:
      /books:
        post:
          security: [{bearerAuth: ["catalog:write"]}]

The chassis verifies the token through connexion's security middleware (``security_map``):
an asymmetric signature by the key in ``auth.public_key`` (so a verifying service can never mint
a token), ``exp``, ``iss`` (``auth.issuer``) and ``aud`` (``auth.audience``, by default the
service's name), then the operation's scopes against the token's ``scope`` claim. A request
without a usable token is a 401 and one whose token lacks a scope a 403, both problem+json with
the ``WWW-Authenticate`` challenge of RFC 6750. No token, nor any part of one, is ever logged or
echoed; the detail says only which check failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import jwt
from connexion.security import AbstractSecurityHandler
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from chassis.config import AuthSection, ConfigError
from chassis.errors import ProblemError, problem_content

REQUIRED_CLAIMS = ("exp", "iss", "aud", "sub")
# What a key of each kind may have signed with; "none" and HMAC are never accepted (a service
# holding a shared secret could mint its own tokens).
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
OPERATION_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class Unauthorized(ProblemError):
    """401: no token, or one that is not valid here."""

    status = HTTPStatus.UNAUTHORIZED.value


class Forbidden(ProblemError):
    """403: a valid token without a scope the operation requires."""

    status = HTTPStatus.FORBIDDEN.value


class TokenVerifier:
    """Checks bearer tokens for one service; built once from its ``auth`` settings."""

    def __init__(self, section: AuthSection, *, service_name: str) -> None:
        if section.public_key is None:
            raise ConfigError(
                "auth.public_key: required, since the OpenAPI document secures operations "
                "(set AUTH__PUBLIC_KEY_FILE to a PEM public key, or auth.enabled: false to "
                "leave them open)"
            )
        try:
            self._key = load_pem_public_key(section.public_key.encode("ascii"))
        except (ValueError, TypeError, UnicodeEncodeError):
            raise ConfigError("auth.public_key: not a PEM public key") from None
        self.algorithms = algorithms_for(self._key)
        if not self.algorithms:
            raise ConfigError(
                "auth.public_key: an EC (P-256, P-384, P-521), RSA or EdDSA key is required"
            )
        self.issuer = section.issuer
        self.audience = section.audience or service_name
        self.leeway = section.leeway_seconds
        self.realm = service_name

    def verify(self, authorization: str | None, required_scopes: Sequence[str]) -> dict[str, Any]:
        """The token's claims, or :class:`Unauthorized` / :class:`Forbidden`."""
        token = self._bearer_token(authorization, required_scopes)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,  # type: ignore[arg-type]
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as exc:
            raise self._invalid(_reason(exc)) from None
        granted = token_scopes(claims)
        missing = [scope for scope in required_scopes if scope not in granted]
        if missing:
            needed = " ".join(required_scopes)
            raise Forbidden(
                f"the token lacks the scope {' '.join(missing)}",
                headers={
                    "WWW-Authenticate": self._challenge(error="insufficient_scope", scope=needed)
                },
                required_scopes=list(required_scopes),
            )
        return claims

    def _bearer_token(self, authorization: str | None, required_scopes: Sequence[str]) -> str:
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            needed = f" with the scope {' '.join(required_scopes)}" if required_scopes else ""
            # RFC 6750 §3.1: no error code when the request carried no bearer credentials.
            raise Unauthorized(
                f"this operation needs an Authorization: Bearer token{needed}",
                headers={"WWW-Authenticate": self._challenge()},
            )
        return token.strip()

    def _invalid(self, reason: str) -> Unauthorized:
        return Unauthorized(
            f"the bearer token is not valid here: {reason}",
            headers={
                "WWW-Authenticate": self._challenge(error="invalid_token", error_description=reason)
            },
        )

    def _challenge(self, **parameters: str) -> str:
        fields = {"realm": self.realm, **parameters}
        return "Bearer " + ", ".join(f'{name}="{value}"' for name, value in fields.items())


def algorithms_for(key: object) -> list[str]:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return [EC_ALGORITHMS[key.curve.name]] if key.curve.name in EC_ALGORITHMS else []
    if isinstance(key, rsa.RSAPublicKey):
        return list(RSA_ALGORITHMS)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ["EdDSA"]
    return []


def _reason(exc: jwt.PyJWTError) -> str:
    """Which check failed, in words that never quote the token or its claims."""
    reasons: list[tuple[type[jwt.PyJWTError], str]] = [
        (jwt.ExpiredSignatureError, "it has expired"),
        (jwt.ImmatureSignatureError, "it is not valid yet"),
        (jwt.InvalidAudienceError, "it is meant for another audience"),
        (jwt.InvalidIssuerError, "another issuer signed it"),
        (jwt.MissingRequiredClaimError, "a required claim (exp, iss, aud, sub) is missing"),
        (jwt.InvalidAlgorithmError, "its signing algorithm is not accepted"),
        (jwt.InvalidSignatureError, "its signature does not match"),
        (jwt.DecodeError, "it is not a well-formed signed JWT"),
    ]
    for kind, words in reasons:
        if isinstance(exc, kind):
            return words
    return "it failed verification"


def token_scopes(claims: Mapping[str, Any]) -> set[str]:
    """RFC 9068's space-separated ``scope``; a list (``scp``, as some issuers write) too."""
    value = claims.get("scope") or claims.get("scp") or ""
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, Iterable):
        return {str(item) for item in value}
    return set()


def security_map(verifier: TokenVerifier) -> dict[str, type[AbstractSecurityHandler]]:
    """connexion's ``security_map``: every ``http``/``bearer`` scheme checked by ``verifier``."""

    class BearerJwtHandler(AbstractSecurityHandler):  # type: ignore[misc]  # untyped base
        def get_fn(
            self, security_scheme: dict[str, Any], required_scopes: list[str] | None
        ) -> Callable[[Any], dict[str, Any]]:
            scopes = tuple(required_scopes or ())

            def verify(request: Any) -> dict[str, Any]:
                return verifier.verify(request.headers.get("authorization"), scopes)

            return verify

    return {"bearer": BearerJwtHandler}


def secured_operations(document: Mapping[str, Any]) -> list[str]:
    """The operationIds (or "METHOD path") that need a credential under ``document``."""
    default = document.get("security") or []
    secured = []
    for path, item in (document.get("paths") or {}).items():
        for method in OPERATION_METHODS:
            operation = item.get(method) if isinstance(item, dict) else None
            if not isinstance(operation, dict):
                continue
            requirements = operation.get("security", default)
            if requirements and all(requirement for requirement in requirements):
                secured.append(operation.get("operationId") or f"{method.upper()} {path}")
    return secured


def declare_auth_responses(raw: dict[str, Any], resolved: Mapping[str, Any]) -> None:
    """Adds the 401 and 403 answers to every secured operation of the served document."""
    secured = set(secured_operations(resolved))
    for path, item in (resolved.get("paths") or {}).items():
        for method in OPERATION_METHODS:
            operation = item.get(method) if isinstance(item, dict) else None
            written = ((raw.get("paths") or {}).get(path) or {}).get(method)
            if not isinstance(operation, dict) or not isinstance(written, dict):
                continue
            if (operation.get("operationId") or f"{method.upper()} {path}") not in secured:
                continue
            responses = written.setdefault("responses", {})
            for status, description in AUTH_ANSWERS.items():
                responses.setdefault(str(status), _auth_response(description))


AUTH_ANSWERS = {
    401: "Unauthorized: no bearer token, or one that is expired, for another audience or "
    "issuer, or not signed by the trusted key",
    403: "Forbidden: the token is valid but lacks a scope this operation requires",
}


def _auth_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "WWW-Authenticate": {
                "description": "The RFC 6750 challenge",
                "schema": {"type": "string"},
            }
        },
        "content": problem_content(),
    }
