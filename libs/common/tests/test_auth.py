"""Bearer tokens on secured operations (chassis.auth), through a real service and connexion.

The tiny service's POST /items is secured here with the scope ``items:write`` in a copy of its
OpenAPI document; every other operation stays open.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import jwt
import pytest
import yaml
from opentelemetry import trace
from starlette.testclient import TestClient

from chassis import ConfigError, Service, ServiceClient
from chassis.dev_issuer import DevIssuer
from chassis.metrics import ServiceMetrics
from chassis.testing import capture_logs, hermetic_settings, service_client

SCOPE = "items:write"


@pytest.fixture
def secured_spec(tiny: ModuleType, tmp_path: Path) -> Path:
    document = yaml.safe_load((tiny.SERVICE_DIR / "openapi.yaml").read_text())
    document["components"]["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    document["paths"]["/items"]["post"]["security"] = [{"bearerAuth": [SCOPE]}]
    path = tmp_path / "openapi.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def make_secured(
    tiny: ModuleType, database_url: str, secured_spec: Path, token_issuer: DevIssuer
) -> Callable[..., Service]:
    def make(**environ: str) -> Service:
        variables = {"AUTH__PUBLIC_KEY": token_issuer.public_pem(), **environ}
        settings = hermetic_settings(
            tiny.TinySettings, tiny.SERVICE_DIR, database_url=database_url, environ=variables
        )
        service: Service = tiny.create_service(settings, spec=secured_spec)
        return service

    return make


@pytest.fixture
def client(make_secured: Callable[..., Service]) -> Any:
    with service_client(make_secured()) as client:
        yield client


def token(issuer: DevIssuer, **overrides: Any) -> str:
    claims: dict[str, Any] = {"audience": "tiny", "scopes": [SCOPE], **overrides}
    return issuer.mint(**claims)


def post_item(client: TestClient, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return client.post("/items", json={"name": "pen"}, headers=headers)


def test_the_right_token_passes(client: TestClient, token_issuer: DevIssuer) -> None:
    response = post_item(client, f"Bearer {token(token_issuer)}")
    assert response.status_code == 201, response.text


def test_the_scheme_name_is_case_insensitive(client: TestClient, token_issuer: DevIssuer) -> None:
    assert post_item(client, f"bearer {token(token_issuer)}").status_code == 201


def test_operations_the_document_does_not_secure_stay_open(client: TestClient) -> None:
    assert client.get("/items/count").status_code == 200


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer   ", "Basic dTpw"])
def test_no_bearer_token_is_a_401_with_a_bare_challenge(
    client: TestClient, authorization: str | None, problem: Callable[..., Any]
) -> None:
    response = post_item(client, authorization)
    body = problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="tiny"'
    assert SCOPE in body["detail"]


def other_issuer_token() -> str:
    return DevIssuer.generate().mint(audience="tiny", scopes=[SCOPE])


def alg_none_token() -> str:
    return jwt.encode(
        {"iss": "bookshop-dev", "aud": "tiny", "sub": "x", "exp": 2**33, "scope": SCOPE},
        key=None,
        algorithm="none",
    )


def hmac_with_public_key_token(issuer: DevIssuer) -> str:
    """The classic algorithm confusion: HS256 keyed with the verifier's public key."""
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"iss": "bookshop-dev", "aud": "tiny", "sub": "x", "exp": 2**33, "scope": SCOPE}
    encode = lambda part: base64.urlsafe_b64encode(  # noqa: E731
        json.dumps(part).encode()
    ).rstrip(b"=")
    import hashlib
    import hmac

    signing_input = encode(header) + b"." + encode(claims)
    signature = hmac.new(issuer.public_pem().encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def tampered_token(issuer: DevIssuer) -> str:
    header, payload, signature = token(issuer, scopes=["nothing"]).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = SCOPE
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


INVALID_TOKENS: dict[str, tuple[Callable[[DevIssuer], str], str]] = {
    "expired": (lambda i: token(i, ttl_seconds=-120), "expired"),
    "wrong audience": (lambda i: token(i, audience="books"), "another audience"),
    "wrong issuer": (
        lambda i: DevIssuer(i._private_key, issuer="evil").mint(audience="tiny", scopes=[SCOPE]),
        "another issuer",
    ),
    "bad signature": (lambda i: other_issuer_token(), "signature does not match"),
    "tampered claims": (tampered_token, "signature does not match"),
    "alg none": (lambda i: alg_none_token(), "algorithm is not accepted"),
    "HS256 keyed with the public key": (hmac_with_public_key_token, "algorithm is not accepted"),
    "not a JWT": (lambda i: "not.a.jwt", "not a well-formed"),
    "no subject": (lambda i: token(i, sub=None), "required claim"),
}


@pytest.mark.parametrize("case", INVALID_TOKENS)
def test_an_invalid_token_is_a_401_naming_the_failed_check(
    client: TestClient, token_issuer: DevIssuer, case: str, problem: Callable[..., Any]
) -> None:
    make, reason = INVALID_TOKENS[case]
    bad = make(token_issuer)
    response = post_item(client, f"Bearer {bad}")
    body = problem(response, 401)
    assert reason in body["detail"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="tiny", error="invalid_token", error_description="')
    assert bad not in response.text
    assert bad not in challenge


def test_a_token_without_the_scope_is_a_403_naming_it(
    client: TestClient, token_issuer: DevIssuer, problem: Callable[..., Any]
) -> None:
    response = post_item(client, f"Bearer {token(token_issuer, scopes=['items:read'])}")
    body = problem(response, 403)
    assert body["required_scopes"] == [SCOPE]
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="tiny", error="insufficient_scope", scope="{SCOPE}"'
    )


def test_a_scope_list_claim_is_understood(client: TestClient, token_issuer: DevIssuer) -> None:
    listed = token_issuer.mint(audience="tiny", scp=[SCOPE], scope=None)
    assert post_item(client, f"Bearer {listed}").status_code == 201


def test_a_refused_request_writes_nothing(client: TestClient) -> None:
    before = client.get("/items/count").json()
    post_item(client, "Bearer nope")
    assert client.get("/items/count").json() == before


def test_no_token_reaches_a_log_line(client: TestClient, token_issuer: DevIssuer) -> None:
    good, expired = token(token_issuer), token(token_issuer, ttl_seconds=-120)
    with capture_logs() as lines:
        post_item(client, f"Bearer {good}")
        post_item(client, f"Bearer {expired}")
        post_item(client, f"Bearer {good[:-4]}AAAA")
    assert lines, "the access log must have run"
    logged = json.dumps(lines, default=str)
    for secret in (good, expired, good.split(".")[2], expired.split(".")[2]):
        assert secret not in logged


def test_the_served_document_declares_401_and_403_on_secured_operations_only(
    client: TestClient,
) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    responses = paths["/items"]["post"]["responses"]
    assert {"401", "403"} <= set(responses)
    assert "WWW-Authenticate" in responses["401"]["headers"]
    assert "401" not in paths["/items/count"]["get"]["responses"]


def test_a_secured_document_without_a_key_stops_start_up(
    tiny: ModuleType, database_url: str, secured_spec: Path
) -> None:
    settings = hermetic_settings(tiny.TinySettings, tiny.SERVICE_DIR, database_url=database_url)
    with pytest.raises(ConfigError, match=r"auth\.public_key: required"):
        tiny.create_service(settings, spec=secured_spec)


@pytest.mark.parametrize(
    "key", ["not a key", DevIssuer.generate().private_pem()], ids=["garbage", "a private key"]
)
def test_a_bad_key_stops_start_up_without_echoing_it(
    make_secured: Callable[..., Service], key: str
) -> None:
    with pytest.raises(ConfigError, match=r"auth\.public_key: not a PEM public key") as caught:
        make_secured(AUTH__PUBLIC_KEY=key)
    assert key not in str(caught.value)


def test_auth_disabled_opens_secured_operations_with_a_warning(
    make_secured: Callable[..., Service], capsys: pytest.CaptureFixture[str]
) -> None:
    service = make_secured(AUTH__ENABLED="false")  # it configures logging: read its output
    with service_client(service) as client:
        assert post_item(client, None).status_code == 201
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    warning = next(line for line in lines if line["message"].startswith("auth is disabled"))
    assert warning["level"] == "warning"
    assert warning["operations"] == ["create_item"]


def test_audience_and_issuer_come_from_settings(
    make_secured: Callable[..., Service], token_issuer: DevIssuer
) -> None:
    service = make_secured(AUTH__AUDIENCE="inventory", AUTH__ISSUER="corp-idp")
    corp = DevIssuer(token_issuer._private_key, issuer="corp-idp")
    with service_client(service) as client:
        good = corp.mint(audience="inventory", scopes=[SCOPE])
        assert post_item(client, f"Bearer {good}").status_code == 201
        assert post_item(client, f"Bearer {token(token_issuer)}").status_code == 401


def test_the_public_key_can_come_from_a_file(
    make_secured: Callable[..., Service], token_issuer: DevIssuer, tmp_path: Path
) -> None:
    key_file = tmp_path / "issuer.pub"
    key_file.write_text(token_issuer.public_pem())
    service = make_secured(AUTH__PUBLIC_KEY="", AUTH__PUBLIC_KEY_FILE=str(key_file))
    with service_client(service) as client:
        assert post_item(client, f"Bearer {token(token_issuer)}").status_code == 201


def test_the_service_client_presents_its_credential(
    client: TestClient, token_issuer: DevIssuer
) -> None:
    def calling(credential: str | None) -> ServiceClient:
        return ServiceClient(
            "tiny",
            "http://testserver",
            metrics=ServiceMetrics(),
            tracer=trace.get_tracer("test"),
            token=credential,
            transport=client._transport,
        )

    assert calling(token(token_issuer)).post("/items", json={"name": "a"}).status_code == 201
    from chassis import BadGateway

    for credential in (None, token(token_issuer, scopes=[])):
        with pytest.raises(BadGateway, match=r"refused this service's credential \(40[13]\)"):
            calling(credential).post("/items", json={"name": "b"})
