"""JWT verification table: every hostile token is refused with the right code."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.auth import AuthConfig, AuthError, mint_hs256, verify

SECRET = "unit-secret-unit-secret-unit-secret"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUB = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_PUB = (
    EC_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def b64(d: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def claims(**kw: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 600, **kw}


HS = AuthConfig(hs_secret=SECRET)
RS = AuthConfig(public_key_pem=RSA_PUB)
ES = AuthConfig(public_key_pem=EC_PUB)
HS_ISS = AuthConfig(hs_secret=SECRET, issuer="https://idp.example", audience="tasksync")


@pytest.mark.parametrize(
    ("cfg", "token", "outcome"),
    [
        pytest.param(HS, mint_hs256(SECRET, "alice"), "alice", id="hs256-ok"),
        pytest.param(RS, jwt.encode(claims(), RSA_KEY, algorithm="RS256"), "alice", id="rs256-ok"),
        pytest.param(ES, jwt.encode(claims(), EC_KEY, algorithm="ES256"), "alice", id="es256-ok"),
        pytest.param(
            HS,
            jwt.encode(claims(), "wrong-secret-wrong-secret-wrong!!", algorithm="HS256"),
            "unauthorized",
            id="forged-signature",
        ),
        pytest.param(
            HS,
            f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}.",
            "unauthorized",
            id="alg-none",
        ),
        pytest.param(
            RS,
            f"{b64({'alg': 'HS256'})}.{b64(claims())}.c2ln",
            "unauthorized",
            id="alg-confusion-hs256-with-public-key",
        ),
        pytest.param(
            HS,
            jwt.encode(claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256"),
            "token_expired",
            id="expired",
        ),
        pytest.param(
            HS,
            jwt.encode(claims(nbf=int(time.time()) + 300), SECRET, algorithm="HS256"),
            "unauthorized",
            id="not-yet-valid",
        ),
        pytest.param(
            HS,
            jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
            "unauthorized",
            id="missing-sub",
        ),
        pytest.param(
            HS,
            jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
            "unauthorized",
            id="missing-exp",
        ),
        pytest.param(
            HS,
            jwt.encode(claims(sub=""), SECRET, algorithm="HS256"),
            "unauthorized",
            id="empty-sub",
        ),
        pytest.param(
            HS,
            jwt.encode(claims(sub=123), SECRET, algorithm="HS256"),
            "unauthorized",
            id="non-string-sub",
        ),
        pytest.param(
            HS_ISS,
            jwt.encode(claims(iss="https://evil", aud="tasksync"), SECRET, algorithm="HS256"),
            "unauthorized",
            id="wrong-issuer",
        ),
        pytest.param(
            HS_ISS,
            jwt.encode(claims(iss="https://idp.example", aud="other"), SECRET, algorithm="HS256"),
            "unauthorized",
            id="wrong-audience",
        ),
        pytest.param(
            HS_ISS,
            jwt.encode(
                claims(iss="https://idp.example", aud="tasksync"), SECRET, algorithm="HS256"
            ),
            "alice",
            id="issuer-audience-ok",
        ),
        pytest.param(HS, "not.a.jwt", "unauthorized", id="garbage"),
        pytest.param(HS, "", "unauthorized", id="empty"),
        pytest.param(HS, "x" * 9000, "unauthorized", id="oversized"),
        pytest.param(
            ES,
            jwt.encode(claims(), RSA_KEY, algorithm="RS256"),
            "unauthorized",
            id="rs256-token-against-ec-key",
        ),
    ],
)
def test_verify_table(cfg: AuthConfig, token: str, outcome: str) -> None:
    if outcome in ("unauthorized", "token_expired"):
        with pytest.raises(AuthError) as e:
            verify(cfg, token)
        assert e.value.code == outcome
    else:
        assert verify(cfg, token).user == outcome


def test_hs256_signed_with_public_key_is_refused() -> None:
    # Classic algorithm confusion: attacker signs HS256 with the (public) RSA key as secret.
    # PyJWT refuses to produce such a token, so build it by hand.
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims())}"
    mac = hmac.new(RSA_PUB.encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(AuthError):
        verify(RS, forged)


def test_jwks_selects_key_by_kid() -> None:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    jwk.update(kid="k1", alg="RS256")
    cfg = AuthConfig(jwks={"keys": [jwk]})
    good = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    assert verify(cfg, good).user == "alice"
    with pytest.raises(AuthError):
        verify(cfg, jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "nope"}))
