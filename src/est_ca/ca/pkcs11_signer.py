"""CA keys on a PKCS#11 token (an HSM, or SoftHSM2 in tests): a `Signer` that never sees the key.

The key is generated on the token, sensitive and not extractable (`generate_token_key`); the
service only asks the token to sign TBS bytes. What the token cannot give us (it never hands
out the key) is why signing.py assembles every certificate, CRL and OCSP response from TBS
bytes and a signature.

Threads. A PKCS#11 session runs one operation at a time, so the signer keeps a bounded pool
of sessions, one per worker thread that may sign at once (`pool_size`): a thread takes a
session, signs, and puts it back; a thread finding none free waits for one. Login state is
per token and application, so one session per token logs in (`_Module.open_session`) and
every signer's sessions share its login. python-pkcs11 initialises a module with NULL
arguments, which in PKCS#11 promises that the application makes no concurrent calls;
SoftHSM2 then switches its own locks off, and two threads signing on two sessions at once
crash the process (seen in tests/ca/test_pkcs11_signer.py). So every call into one module
holds that module's lock: the pool bounds the sessions and keeps a session per thread, the
lock makes the calls themselves one at a time (an RSA-3072 signature on SoftHSM2 takes a
few milliseconds; an HSM's own latency dominates anyway).

Failure. When the token goes away (unplugged, its daemon down, its directory moved), every
call fails with a PKCS#11 error. The signer then drops its sessions and raises
`TokenUnavailable` (503 + Retry-After at the HTTP edge); `available` turns false (readiness
reports it). The next signature or `probe()` re-initialises the module (at most once a
second, once for all signers sharing it) and finds the key again: the service recovers on
its own when the token is back.

The PIN is kept in a `TokenPin`, whose repr is redacted, and goes nowhere but `C_Login`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from est_ca.ca.signing import SignatureScheme
from est_ca.errors import ConfigurationError, Unavailable

TokenKeyType = Literal["rsa3072", "rsa4096", "ec-p256", "ec-p384"]
TOKEN_KEY_TYPES: tuple[TokenKeyType, ...] = ("rsa3072", "rsa4096", "ec-p256", "ec-p384")
_CURVES = {"ec-p256": ("secp256r1", 1.2), "ec-p384": ("secp384r1", 1.3)}
# How long a client should wait before retrying when the token is away.
RETRY_AFTER_SECONDS = 5
# A module is re-initialised at most this often, however many requests fail meanwhile.
_REINIT_INTERVAL = 1.0

_PSS = {
    "sha256": (Mechanism.SHA256_RSA_PKCS_PSS, Mechanism.SHA256, MGF.SHA256),
    "sha384": (Mechanism.SHA384_RSA_PKCS_PSS, Mechanism.SHA384, MGF.SHA384),
    "sha512": (Mechanism.SHA512_RSA_PKCS_PSS, Mechanism.SHA512, MGF.SHA512),
}
_PKCS1 = {
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}


class TokenUnavailable(Unavailable):
    """The token holding a CA key cannot be reached now; the service retries on its own."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retry_after_seconds=RETRY_AFTER_SECONDS)


class TokenPin:
    """The token's user PIN: held for re-login after the token comes back, never shown."""

    def __init__(self, value: str) -> None:
        if not value:
            raise ConfigurationError("the token PIN is empty")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def same_as(self, other: TokenPin) -> bool:
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __repr__(self) -> str:
        return "TokenPin(<redacted>)"

    __str__ = __repr__


def read_pin(*, pin_file: str | None = None, pin_env: str | None = None, environ: Any) -> TokenPin:
    """The PIN from a file (first line) or an environment variable: never a command-line
    argument, which every user of the machine can read in the process listing."""
    if bool(pin_file) == bool(pin_env):
        raise ConfigurationError("give the token PIN by exactly one of pin_file or pin_env")
    if pin_file:
        try:
            text = open(pin_file, encoding="utf-8").read()  # noqa: PTH123, SIM115
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the token PIN file {pin_file}: {exc.strerror}"
            ) from exc
        return TokenPin(text.strip())
    assert pin_env
    value = environ.get(pin_env)
    if value is None:
        raise ConfigurationError(f"the environment variable {pin_env} (token PIN) is not set")
    return TokenPin(value.strip())


class _Module:
    """One loaded PKCS#11 module. Re-initialising it invalidates every session of every signer
    using it, so signers compare `generation` to know whether their sessions are stale."""

    _loaded: ClassVar[dict[str, _Module]] = {}
    _loaded_lock = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        # Every call into the module holds this lock (see the module's docstring, "Threads").
        self.lock = threading.RLock()
        self.generation = 0
        self._reinitialised_at = 0.0
        # Per token, the session that logged in: login state is per token and application,
        # so every other session (of any signer) shares it; closing it would log all out.
        self._logins: dict[str, tuple[Any, TokenPin]] = {}
        try:
            self.lib = pkcs11.lib(path)
        except (RuntimeError, OSError, pkcs11.PKCS11Error) as exc:
            raise ConfigurationError(f"cannot load the PKCS#11 module {path}") from exc

    @classmethod
    def of(cls, path: str) -> _Module:
        with cls._loaded_lock:
            module = cls._loaded.get(path)
            if module is None:
                module = cls._loaded[path] = cls(path)
            return module

    def reinitialise(self, seen: int, *, now_or_never: bool = False) -> int:
        """C_Finalize + C_Initialize unless another signer did since `seen` (or, unless
        `now_or_never`, within the last second); the generation after it."""
        with self.lock:
            now = time.monotonic()
            recently = now - self._reinitialised_at < _REINIT_INTERVAL
            if self.generation == seen and (now_or_never or not recently):
                self._reinitialised_at = now
                self.generation += 1
                self._logins.clear()  # finalising closed them
                with contextlib.suppress(pkcs11.PKCS11Error):  # the next attempt tries again
                    self.lib.reinitialize()
            return self.generation

    def open_session(self, token_label: str, pin: TokenPin, *, rw: bool = False) -> Any:
        """A new session on the token, logged in through the token's login session."""
        with self.lock:
            if not self.lib.initialized:  # re-initialising failed while the token was away
                self.lib.initialize()
            token = self.lib.get_token(token_label=token_label)
            login = self._logins.get(token_label)
            if login is None:
                self._logins[token_label] = (token.open(user_pin=pin.reveal()), pin)
            elif not pin.same_as(login[1]):
                # Logged in already, so the token would not check this PIN: refuse it here,
                # or a wrong one would only show after the next restart.
                raise ConfigurationError(
                    f"two different PINs are configured for the token {token_label!r}"
                )
            return token.open(rw=rw)


@dataclasses.dataclass
class _Session:
    session: Any
    key: Any
    generation: int


class Pkcs11Signer:
    """A CA key on a PKCS#11 token.

    Contract (as for every `Signer`): `sign` blocks, is safe to call from any number of threads
    at once (at most `pool_size` sign on the token concurrently, the rest wait for a session),
    and returns the signature in the encoding X.509 puts in a signature BIT STRING: the RSA
    signature octets, or for ECDSA the DER `Ecdsa-Sig-Value` (the token's raw r||s converted).
    `public_key` is read from the token once, at open.
    """

    def __init__(
        self, *, module: str, token: str, label: str, pin: TokenPin, pool_size: int
    ) -> None:
        if pool_size < 1:
            raise ConfigurationError("a token signer needs at least one session")
        self._module = _Module.of(module)
        self._token_label = token
        self._label = label
        self._pin = pin
        self._idle: queue.LifoQueue[_Session] = queue.LifoQueue()
        self._permits = threading.BoundedSemaphore(pool_size)
        self._open_lock = threading.Lock()
        self._generation = self._module.generation
        self._available = True
        self.pool_size = pool_size
        try:
            with self._session() as held, self._module.lock:
                self._public_key = _public_key(held.session, label)
        except TokenUnavailable as exc:
            raise ConfigurationError(
                f"the key {label!r} on PKCS#11 token {token!r} cannot be used: {exc.detail}"
            ) from exc

    @property
    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        return self._public_key

    @property
    def available(self) -> bool:
        """False from a failed token call until a signature succeeds again."""
        return self._available

    def sign(self, data: bytes, scheme: SignatureScheme) -> bytes:
        for attempt in (1, 2):
            with self._session() as held:
                try:
                    with self._module.lock:
                        return _sign(held.key, data, scheme)
                except pkcs11.PKCS11Error as exc:
                    # A session from before an outage fails once; a fresh one may not.
                    self._lost(held)
                    if attempt == 2:
                        raise self._unavailable(exc) from None
        raise AssertionError("unreachable")

    def probe(self) -> bool:
        """Try the token with one signature (readiness after an outage); True when it signs."""
        scheme = (
            SignatureScheme("ecdsa", "sha256")
            if isinstance(self._public_key, ec.EllipticCurvePublicKey)
            else SignatureScheme("rsassa-pss", "sha256", 32)
        )
        try:
            probe = b"est-ca token probe"
            return scheme.verify(self._public_key, self.sign(probe, scheme), probe)
        except TokenUnavailable:
            return False

    def close(self) -> None:
        with self._open_lock:
            self._drop_all()

    def __repr__(self) -> str:  # never the PIN
        return f"Pkcs11Signer(token={self._token_label!r}, label={self._label!r})"

    # -- sessions --------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[_Session]:
        self._permits.acquire()
        try:
            held = self._take()
            yield held
            self._available = True
            if held.generation == self._module.generation:
                self._idle.put(held)
        finally:
            self._permits.release()

    def _take(self) -> _Session:
        while True:
            try:
                held = self._idle.get_nowait()
            except queue.Empty:
                return self._open()
            if held.generation == self._module.generation:
                return held

    def _open(self) -> _Session:
        """A new session with the key found in it. A failure re-initialises the module and
        tries once more: after an outage, the first call is what tells the module to start
        afresh, and the token may well be back."""
        with self._open_lock:
            for attempt in (1, 2):
                generation = self._module.generation
                if generation != self._generation:
                    self._drop_all()  # sessions of an earlier initialisation are gone
                    self._generation = generation
                try:
                    session = self._module.open_session(self._token_label, self._pin)
                    with self._module.lock:
                        key = session.get_key(
                            object_class=ObjectClass.PRIVATE_KEY, label=self._label
                        )
                except (pkcs11.PKCS11Error, pkcs11.NoSuchKey, pkcs11.NoSuchToken) as exc:
                    self._generation = self._module.reinitialise(generation)
                    self._drop_all()
                    if attempt == 2 or self._generation == generation:
                        raise self._unavailable(exc) from None
                    continue
                return _Session(session, key, generation)
        raise AssertionError("unreachable")

    def _lost(self, held: _Session) -> None:
        """A call on `held` failed: the token is gone or reset; start afresh next time."""
        with self._open_lock:
            self._generation = self._module.reinitialise(held.generation)
            self._drop_all()

    def _drop_all(self) -> None:
        while True:
            try:
                held = self._idle.get_nowait()
            except queue.Empty:
                break
            with self._module.lock:
                _close_quietly(held.session)

    def _unavailable(self, exc: BaseException) -> TokenUnavailable:
        self._available = False
        return TokenUnavailable(
            f"the CA key {self._label!r} on token {self._token_label!r} is unavailable "
            f"({type(exc).__name__}); try again later"
        )


def _close_quietly(session: Any) -> None:
    with contextlib.suppress(pkcs11.PKCS11Error):  # a token that went away took it along
        session.close()


def _sign(key: Any, data: bytes, scheme: SignatureScheme) -> bytes:
    if scheme.algorithm == "ecdsa":
        # Hashed here, signed raw (CKM_ECDSA): every token has that mechanism.
        digest = hashlib.new(scheme.hash, data).digest()
        raw = bytes(key.sign(digest, mechanism=Mechanism.ECDSA))
        half = len(raw) // 2
        r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        return encode_dss_signature(r, s)
    if scheme.algorithm == "rsassa-pss":
        mechanism, hash_mechanism, mgf = _PSS[scheme.hash]
        return bytes(
            key.sign(
                data, mechanism=mechanism, mechanism_param=(hash_mechanism, mgf, scheme.salt_length)
            )
        )
    return bytes(key.sign(data, mechanism=_PKCS1[scheme.hash]))


def _public_key(session: Any, label: str) -> CertificateIssuerPublicKeyTypes:
    try:
        public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
    except (pkcs11.NoSuchKey, pkcs11.MultipleObjectsReturned) as exc:
        raise ConfigurationError(
            f"the token holds no single public key labelled {label!r} (generate the key with "
            "`est-ca key generate --kind pkcs11`)"
        ) from exc
    if public.key_type == KeyType.RSA:
        modulus = int.from_bytes(public[Attribute.MODULUS], "big")
        exponent = int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    if public.key_type == KeyType.EC:
        loaded = serialization.load_der_public_key(encode_ec_public_key(public))
        assert isinstance(loaded, ec.EllipticCurvePublicKey)
        return loaded
    raise ConfigurationError(f"the key {label!r} on the token is neither RSA nor EC")


def generate_token_key(
    *, module: str, token: str, label: str, pin: TokenPin, key_type: TokenKeyType
) -> CertificateIssuerPublicKeyTypes:
    """A new key pair on the token: private half sensitive and never extractable, stored.

    Refuses a label already taken, so a typo never shadows the CA key that is in service.
    """
    loaded = _Module.of(module)
    with loaded.lock:
        return _generate(loaded, token, label, pin, key_type)


def _generate(
    loaded: _Module, token: str, label: str, pin: TokenPin, key_type: TokenKeyType
) -> CertificateIssuerPublicKeyTypes:
    try:
        try:
            session = loaded.open_session(token, pin, rw=True)
        except pkcs11.PKCS11Error:
            # The module may be stale from an outage no signer has noticed the end of yet.
            loaded.reinitialise(loaded.generation, now_or_never=True)
            session = loaded.open_session(token, pin, rw=True)
    except pkcs11.NoSuchToken as exc:
        raise ConfigurationError(f"no PKCS#11 token labelled {token!r}") from exc
    except pkcs11.PKCS11Error as exc:
        raise ConfigurationError(
            f"cannot log in to the token {token!r} ({type(exc).__name__})"
        ) from exc
    try:
        existing = list(session.get_objects({Attribute.LABEL: label}))
        if existing:
            raise ConfigurationError(f"the token already holds objects labelled {label!r}")
        private_template = {
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.PRIVATE: True,
        }
        key_id = hashlib.sha256(label.encode()).digest()[:16]
        if key_type.startswith("rsa"):
            session.generate_keypair(
                KeyType.RSA,
                int(key_type.removeprefix("rsa")),
                store=True,
                label=label,
                id=key_id,
                public_template={Attribute.VERIFY: True},
                private_template=private_template,
            )
        else:
            curve, _ = _CURVES[key_type]
            parameters = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True
            )
            parameters.generate_keypair(
                store=True,
                label=label,
                id=key_id,
                public_template={Attribute.VERIFY: True},
                private_template=private_template,
            )
        return _public_key(session, label)
    finally:
        _close_quietly(session)


@dataclasses.dataclass(frozen=True)
class TokenKeys:
    """One token, logged in with one PIN: makes keys on it and signers for them. What the OCSP
    responder keeper uses when its keys live on the token (a new key per certificate)."""

    module: str
    token: str
    pin: TokenPin
    pool_size: int

    def generate(self, label: str, key_type: TokenKeyType) -> CertificateIssuerPublicKeyTypes:
        """Blocking: run it on a worker thread."""
        return generate_token_key(
            module=self.module, token=self.token, label=label, pin=self.pin, key_type=key_type
        )

    def signer(self, label: str) -> Pkcs11Signer:
        """Blocking: run it on a worker thread. ConfigurationError when no such key exists."""
        return Pkcs11Signer(
            module=self.module,
            token=self.token,
            label=label,
            pin=self.pin,
            pool_size=self.pool_size,
        )
