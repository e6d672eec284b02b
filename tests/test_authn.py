"""Token verification (coordinator.authn) and the SDK's credential resolution
(client.credentials), as plain data: every way a token can be wrong is
UNAUTHENTICATED, with no processes involved."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cli.pki import CertificateAuthority, LocalPki, new_signing_key
from cli.tokens import mint_token, mint_x5c_token
from client.credentials import Credentials, resolve
from coordinator.authn import TokenVerifier, bearer_token, refuse_cluster_ca
from core.errors import InvalidArgument, Unauthenticated
from core.identity import ComponentRole, principal_uri


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    return LocalPki.ensure(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def verifier(pki: LocalPki) -> TokenVerifier:
    return TokenVerifier(pki.jwks_file, pki.principals_ca_file.read_bytes())


def signed(pki: LocalPki, **claims: object) -> str:
    now = int(time.time())
    base = {"iss": "vecshard", "sub": "svc", "aud": "vecshard", "iat": now, "exp": now + 60}
    key = pki.signing_key_file.read_bytes()

    private = serialization.load_pem_private_key(key, password=None)
    payload = {k: v for k, v in {**base, **claims}.items() if v is not None}
    return jwt.encode(payload, private, algorithm="EdDSA", headers={"kid": pki.signing_kid()})  # type: ignore[arg-type]  # PyJWT's stub narrows keys; Ed25519 is valid


def test_a_good_token_names_its_principal_and_is_cached(
    pki: LocalPki, verifier: TokenVerifier
) -> None:
    token = pki.mint("svc-a", 60)
    first = verifier.verify(token)
    assert (first.principal, first.via) == ("svc-a", "jwks")
    assert verifier.verify(token) is first  # the signature is checked once


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": int(time.time()) - 600}, "expired"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "another-issuer"}, "issuer"),
        ({"nbf": int(time.time()) + 600}, "not yet valid"),
        ({"sub": ""}, "no principal"),
        ({"exp": None}, "exp"),
    ],
)
def test_claims_that_do_not_hold_are_refused(
    pki: LocalPki, verifier: TokenVerifier, claims: dict[str, object], why: str
) -> None:
    with pytest.raises(Unauthenticated):
        verifier.verify(signed(pki, **claims))


def test_a_cached_token_still_expires(pki: LocalPki) -> None:
    now = [time.time()]
    v = TokenVerifier(pki.jwks_file, clock=lambda: now[0], leeway=0)
    token = pki.mint("svc", 10)
    v.verify(token)
    now[0] += 11
    with pytest.raises(Unauthenticated, match="expired"):
        v.verify(token)


def test_forged_signatures_and_algorithms_are_refused(
    pki: LocalPki, verifier: TokenVerifier
) -> None:
    other_key, _ = new_signing_key()
    with pytest.raises(Unauthenticated, match="does not verify"):
        verifier.verify(mint_token(other_key, pki.signing_kid(), "admin", 60))
    with pytest.raises(Unauthenticated, match="unknown key"):
        verifier.verify(mint_token(other_key, "no-such-kid", "admin", 60))
    # alg=none, and HMAC keyed with the public JWK (algorithm confusion).
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "none", "kid": pki.signing_kid()}).encode()
    )
    body = base64.urlsafe_b64encode(json.dumps({"sub": "admin"}).encode())
    with pytest.raises(Unauthenticated, match="algorithm"):
        verifier.verify(f"{header.decode().rstrip('=')}.{body.decode().rstrip('=')}.")
    public = json.loads(pki.jwks_file.read_text())["keys"][0]["x"]
    hs = jwt.encode({"sub": "admin"}, public, algorithm="HS256", headers={"kid": pki.signing_kid()})
    with pytest.raises(Unauthenticated, match="algorithm"):
        verifier.verify(hs)
    with pytest.raises(Unauthenticated, match="exceeds"):
        verifier.verify("x" * 20_000)
    with pytest.raises(Unauthenticated, match="malformed"):
        verifier.verify("not-a-token")


def test_certificate_signed_tokens_must_chain_to_the_ca_and_name_the_principal(
    pki: LocalPki, verifier: TokenVerifier
) -> None:
    cert, key = pki.issue_principal_cert("svc-b")
    assert verifier.verify(mint_x5c_token(cert, key, "svc-b", 60)).via == "x5c"
    with pytest.raises(Unauthenticated, match="does not name principal"):
        verifier.verify(mint_x5c_token(cert, key, "admin", 60))
    evil = CertificateAuthority.create("evil")
    ecert, ekey = evil.issue("svc-b", uris=["spiffe://vecshard/principal/svc-b"], server=False)
    with pytest.raises(Unauthenticated, match="trusted CA"):
        verifier.verify(mint_x5c_token(ecert, ekey, "svc-b", 60))
    without_ca = TokenVerifier(pki.jwks_file)
    with pytest.raises(Unauthenticated, match="not accepted"):
        without_ca.verify(mint_x5c_token(cert, key, "svc-b", 60))


def test_cluster_ca_certificates_are_not_caller_credentials(
    pki: LocalPki, verifier: TokenVerifier
) -> None:
    """Components' trust anchor is not the client CA: a cluster-CA certificate
    (a component's, or one naming a principal, as releases before the
    principals CA issued them) signs no token a coordinator accepts."""
    cluster = pki.ca()
    cert, key = cluster.issue("svc-b", uris=[principal_uri("svc-b")], server=False)
    with pytest.raises(Unauthenticated, match="trusted CA"):
        verifier.verify(mint_x5c_token(cert, key, "svc-b", 60))
    component = pki.component(ComponentRole.COORDINATOR)
    ccert, ckey = component.cert_file.read_bytes(), component.key_file.read_bytes()
    with pytest.raises(Unauthenticated, match="trusted CA"):
        verifier.verify(mint_x5c_token(ccert, ckey, "coordinator", 60))


def test_a_coordinator_refuses_the_cluster_ca_as_its_client_ca(pki: LocalPki) -> None:
    cluster = pki.ca_file.read_bytes()
    principals = pki.principals_ca_file.read_bytes()
    refuse_cluster_ca(principals, cluster)  # apart: accepted
    with pytest.raises(ValueError, match="cluster CA"):
        refuse_cluster_ca(cluster, cluster)
    with pytest.raises(ValueError, match="cluster CA"):  # in a bundle
        refuse_cluster_ca(principals + cluster, cluster)
    with pytest.raises(ValueError, match="cluster CA"):  # etcd's own CA, beside tls.ca_file
        refuse_cluster_ca(cluster, CertificateAuthority.create("etcd CA").cert_pem + cluster)
    # The same key re-issued under a new certificate is the same CA.
    reissued = CertificateAuthority.create("renamed", days=1, key=pki.ca().key).cert_pem
    with pytest.raises(ValueError, match="cluster CA"):
        refuse_cluster_ca(reissued, cluster)


def test_a_rotated_jwks_is_picked_up_without_a_restart(pki: LocalPki, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(pki.jwks_file.read_text())
    v = TokenVerifier(jwks)
    new_key, new_jwk = new_signing_key()
    token = mint_token(new_key, new_jwk["kid"], "svc", 60)
    with pytest.raises(Unauthenticated):
        v.verify(token)
    doc = json.loads(jwks.read_text())
    doc["keys"].append(new_jwk)
    jwks.write_text(json.dumps(doc))
    import os

    os.utime(jwks, (time.time() + 5, time.time() + 5))  # a new mtime, whatever the clock
    assert v.verify(token).principal == "svc"


def test_a_key_removed_from_the_jwks_stops_verifying_cached_tokens_too(tmp_path: Path) -> None:
    """The JWKS was re-read only for an unknown kid: a key removed after a
    leak kept verifying new tokens, and cached ones, until a restart (found
    in review). It is now looked at every `jwks_recheck` seconds (5 by
    default; 0 here), and a change empties the token cache."""
    import os

    old_key, old_jwk = new_signing_key()
    new_key, new_jwk = new_signing_key()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [old_jwk, new_jwk]}))
    v = TokenVerifier(jwks, jwks_recheck=0)
    cached = mint_token(old_key, old_jwk["kid"], "svc", 600)
    assert v.verify(cached).principal == "svc"
    jwks.write_text(json.dumps({"keys": [new_jwk]}))
    os.utime(jwks, (time.time() + 5, time.time() + 5))
    for token in (mint_token(old_key, old_jwk["kid"], "admin", 600), cached):
        with pytest.raises(Unauthenticated, match="unknown key"):
            v.verify(token)
    assert v.verify(mint_token(new_key, new_jwk["kid"], "svc", 600)).principal == "svc"


def test_a_new_kid_seen_first_still_empties_the_cache_of_the_removed_key(tmp_path: Path) -> None:
    """The first call after a rotation carried the new key's token: its
    unknown kid re-read the keys inside its own verification, after the
    generation was compared, and no later call saw a change — the removed
    key's cached token kept passing (found in review of the fix above)."""
    import os

    leaked, leaked_jwk = new_signing_key()
    fresh, fresh_jwk = new_signing_key()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [leaked_jwk]}))
    v = TokenVerifier(jwks)  # the default: a look every 5 s
    stolen = mint_token(leaked, leaked_jwk["kid"], "admin", 3600)
    assert v.verify(stolen).principal == "admin"
    jwks.write_text(json.dumps({"keys": [fresh_jwk]}))
    os.utime(jwks, (time.time() + 5, time.time() + 5))
    assert v.verify(mint_token(fresh, fresh_jwk["kid"], "svc", 600)).principal == "svc"
    with pytest.raises(Unauthenticated, match="unknown key"):
        v.verify(stolen)


def test_a_cached_certificate_signed_token_does_not_outlive_its_certificate(
    pki: LocalPki,
) -> None:

    cert_pem, key_pem = pki.issue_principal_cert("svc-b", days=1)
    not_after = x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc.timestamp()
    now = [time.time()]
    v = TokenVerifier(
        pki.jwks_file, pki.principals_ca_file.read_bytes(), clock=lambda: now[0], leeway=0
    )
    token = mint_x5c_token(cert_pem, key_pem, "svc-b", 2 * 86_400)  # past the certificate
    assert v.verify(token).via == "x5c"
    now[0] = not_after + 1
    with pytest.raises(Unauthenticated, match="expired"):
        v.verify(token)


def test_bearer_metadata() -> None:
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    with pytest.raises(Unauthenticated, match="no credentials"):
        bearer_token([("x", "y")])
    with pytest.raises(Unauthenticated, match="Bearer"):
        bearer_token([("authorization", "Basic abc")])


def test_sdk_credentials_resolve_explicit_then_arguments_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file, ca_file = tmp_path / "t.jwt", tmp_path / "ca.pem"
    token_file.write_text("from-file\n")
    ca_file.write_bytes(b"PEM")
    monkeypatch.setenv("VECSHARD_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("VECSHARD_CA_FILE", str(ca_file))
    monkeypatch.delenv("VECSHARD_TOKEN", raising=False)
    assert resolve(None, None, None) == Credentials("from-file", b"PEM")
    assert resolve(None, "explicit", None) == Credentials("explicit", b"PEM")
    given = Credentials("mine", None)
    assert resolve(given, None, None) is given
    with pytest.raises(InvalidArgument):
        resolve(given, "also", None)
    monkeypatch.setenv("VECSHARD_TOKEN", "from-env")
    assert Credentials.from_env().token == "from-env"
    assert "from-env" not in repr(Credentials.from_env())  # never printed


def test_what_wins_does_not_need_what_it_wins_over_to_be_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rotated-away token file made a client given token= (or run with
    # VECSHARD_TOKEN) unbuildable: "cannot read credentials".
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(b"PEM")
    monkeypatch.setenv("VECSHARD_TOKEN_FILE", str(tmp_path / "gone.jwt"))
    monkeypatch.setenv("VECSHARD_CA_FILE", str(ca_file))
    monkeypatch.delenv("VECSHARD_TOKEN", raising=False)
    assert resolve(None, "explicit", None) == Credentials("explicit", b"PEM")
    monkeypatch.setenv("VECSHARD_CA_FILE", str(tmp_path / "gone.pem"))
    assert resolve(None, "explicit", b"MINE") == Credentials("explicit", b"MINE")
    with pytest.raises(InvalidArgument, match="cannot read credentials.*gone.pem"):
        resolve(None, "explicit", None)  # what is used is still read, and must be readable
    monkeypatch.setenv("VECSHARD_TOKEN", "from-env")
    assert resolve(None, None, b"MINE") == Credentials("from-env", b"MINE")
    with pytest.raises(InvalidArgument, match="cannot read credentials.*gone.jwt"):
        Credentials.from_env({"VECSHARD_TOKEN_FILE": str(tmp_path / "gone.jwt")})


def test_a_token_from_the_environment_is_stripped_like_the_token_file() -> None:
    # `export VECSHARD_TOKEN="$(cat t.jwt)"` keeps no newline, a Secret mounted
    # as a variable does: gRPC then failed every call, INTERNAL "Invalid metadata".
    creds = Credentials.from_env({"VECSHARD_TOKEN": " eyJabc.def.ghi\r\n"})
    assert creds.call_metadata() == (("authorization", "Bearer eyJabc.def.ghi"),)
    assert Credentials.from_env({"VECSHARD_TOKEN": "\n"}).token is None
    # ... and one the caller read from a file and passed itself.
    assert Credentials("eyJabc.def.ghi\n").call_metadata() == (
        ("authorization", "Bearer eyJabc.def.ghi"),
    )


@pytest.mark.parametrize(("ttl", "lifetime"), [(0.5, 1), (1, 1), (90.2, 91), (-300, -300)])
def test_a_token_lives_at_least_its_ttl_in_whole_seconds(ttl: float, lifetime: int) -> None:
    # int(ttl) made `auth token --ttl 0.5` a token expiring at its own iat.
    key, jwk = new_signing_key()
    claims = jwt.decode(
        mint_token(key, jwk["kid"], "alice", ttl, now=1_000.7), options={"verify_signature": False}
    )
    assert (claims["iat"], claims["exp"] - claims["iat"]) == (1_000, lifetime)


def test_auth_token_refuses_a_ttl_under_a_second(tmp_path: Path) -> None:
    from cli.main import main

    for ttl in ("0.5", "0", "nan"):
        with pytest.raises(SystemExit, match=r"--ttl \S+: expected at least 1 second"):
            main(["auth", "token", "--pki", str(tmp_path), "--principal", "alice", "--ttl", ttl])
