"""A token issuer for development, demos and tests: one key pair on disk, tokens on demand.

In production tokens come from your identity provider and services hold only its public key
(``auth.public_key``). Without one, this stands in: ``make dev`` keeps a P-256 key pair in
``.dev/auth/``, gives books its public half and shop a token for books' reservations, and
``make token SCOPE=catalog:write`` prints a token for trying writes by hand.

    python -m chassis.dev_issuer keys DIR              the key pair in DIR (made once)
    python -m chassis.dev_issuer mint DIR --scope S    a token signed by DIR's key, on stdout
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chassis.config import DEV_ISSUER

PRIVATE_KEY = "issuer.key"
PUBLIC_KEY = "issuer.pub"
ALGORITHM = "ES256"
DEFAULT_ISSUER = DEV_ISSUER
DEFAULT_TTL_SECONDS = 3600


class DevIssuer:
    """Signs tokens with one EC P-256 private key (ES256)."""

    def __init__(
        self, private_key: ec.EllipticCurvePrivateKey, *, issuer: str = DEFAULT_ISSUER
    ) -> None:
        self._private_key = private_key
        self.issuer = issuer

    @classmethod
    def generate(cls, *, issuer: str = DEFAULT_ISSUER) -> DevIssuer:
        return cls(ec.generate_private_key(ec.SECP256R1()), issuer=issuer)

    @classmethod
    def in_directory(cls, directory: Path, *, issuer: str = DEFAULT_ISSUER) -> DevIssuer:
        """The issuer whose key pair is in ``directory``, made there (owner-only) if absent."""
        private = directory / PRIVATE_KEY
        if not private.is_file():
            directory.mkdir(parents=True, exist_ok=True)
            made = cls.generate(issuer=issuer)
            _write_owner_only(private, made.private_pem())
            (directory / PUBLIC_KEY).write_text(made.public_pem(), encoding="ascii")
            return made
        key = serialization.load_pem_private_key(private.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{private} does not hold an EC private key")
        return cls(key, issuer=issuer)

    def public_pem(self) -> str:
        return (
            self._private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def private_pem(self) -> str:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    def mint(
        self,
        *,
        audience: str,
        scopes: Sequence[str] = (),
        subject: str = "developer",
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        **claims: object,
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + int(ttl_seconds),
            "jti": uuid.uuid4().hex,
            "scope": " ".join(scopes),
            **claims,
        }
        return jwt.encode(payload, self._private_key, algorithm=ALGORITHM)


def _write_owner_only(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chassis.dev_issuer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    keys = commands.add_parser("keys", help="make the key pair in DIR unless it is there")
    keys.add_argument("directory", type=Path)
    mint = commands.add_parser("mint", help="print a token signed by DIR's key")
    mint.add_argument("directory", type=Path)
    mint.add_argument("--scope", default="", help="space-separated scopes, e.g. catalog:write")
    mint.add_argument("--audience", default="books", help="the service it is for (aud)")
    mint.add_argument("--subject", default="developer", help="who it speaks for (sub)")
    mint.add_argument("--ttl", type=float, default=DEFAULT_TTL_SECONDS, help="seconds")
    mint.add_argument("--issuer", default=DEFAULT_ISSUER, help="iss; auth.issuer must match")
    args = parser.parse_args(argv)
    issuer = DevIssuer.in_directory(args.directory, issuer=getattr(args, "issuer", DEFAULT_ISSUER))
    if args.command == "keys":
        print(args.directory / PUBLIC_KEY)
        return 0
    print(
        issuer.mint(
            audience=args.audience,
            scopes=args.scope.split(),
            subject=args.subject,
            ttl_seconds=args.ttl,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
