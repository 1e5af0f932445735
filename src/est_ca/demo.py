"""Demo mode: a demo identity with one order placed at the first start, and a recipe to paste.

The order is placed once (its one-time code shown once, on the start that placed it); later
starts print how to place another, so orders do not pile up with every restart.
"""

from __future__ import annotations

import shlex

from est_ca.audit import Actor
from est_ca.errors import NotFound
from est_ca.registration.identities import Identity, IdentityType
from est_ca.registration.orders import PlacedOrder
from est_ca.service import Service

DEMO_ACTOR = Actor("service", "demo")
# Fictitious CVR numbers start with 9; the name shows that Danish letters survive the trip.
DEMO_CVR = "99999901"
DEMO_GIVEN_NAME = "Søren"
DEMO_SURNAME = "Ærø Ålborg"


async def demo_identity(service: Service) -> Identity:
    for identity in await service.registry.list_identities(
        type=IdentityType.USER, cvr=DEMO_CVR, limit=1
    ):
        return identity
    try:
        await service.registry.get_organisation(DEMO_CVR)
    except NotFound:
        await service.registry.create_organisation(
            DEMO_ACTOR,
            cvr=DEMO_CVR,
            name="Demo Organisation ÆØÅ ApS",
            email_domains=["demo.example"],
        )
    return await service.registry.create_identity(
        DEMO_ACTOR,
        type=IdentityType.USER,
        cvr=DEMO_CVR,
        given_name=DEMO_GIVEN_NAME,
        surname=DEMO_SURNAME,
        email="soren.alborg@demo.example",
    )


async def first_demo_order(service: Service) -> tuple[Identity, PlacedOrder | None]:
    """The demo identity, and its order if this call placed it: only when it has never had
    one (the first start); afterwards None."""
    identity = await demo_identity(service)
    if await service.registry.list_orders(identity_id=identity.id, limit=1):
        return identity, None
    return identity, await service.registry.place_order(DEMO_ACTOR, identity.id)


def recipe(
    service: Service,
    https_url: str,
    identity: Identity,
    placed: PlacedOrder | None,
    command: str,
) -> str:
    """Commands that enroll the demo order with openssl and curl, ready to paste; `command`
    is how to run this est-ca (its absolute path and the options that found this CA)."""
    files = service.files
    root = shlex.quote(str((files.demo_root or files.ca_chain).resolve()))
    # The CA issued the listener's certificate unless the operator configured one: then the
    # root (what a client takes from /cacerts, RFC 7030 4.1.1) is the one trust anchor needed.
    tls = shlex.quote(str(files.tls_cert.resolve())) if service.settings.tls.cert_file else root
    est = f"{https_url}/.well-known/est"
    place_another = f"{command} order create {identity.id}"
    if placed is not None:
        order = placed.order
        credentials = shlex.quote(f"{order.reference}:{placed.one_time_code}")
        order_lines = (
            f"  demo order:     {order.reference}, valid until "
            f"{order.expires_at:%Y-%m-%d %H:%M}Z (placed now, its code shown only now)\n"
            "\nEnroll from another terminal (the one-time code works once):\n"
        )
    else:
        credentials = "'<reference>:<one-time code>'"
        order_lines = (
            "  demo order:     placed at the first start (its one-time code was shown then)\n"
            "\nPlace another demo order (prints a new reference and one-time code, once):\n\n"
            f"  {place_another}\n"
            "\nEnroll from another terminal with that reference and code:\n"
        )
    return f"""
est-ca is running with a DEMO CA (Test - not for production).
  EST:            {est}/
  demo identity:  {DEMO_GIVEN_NAME} {DEMO_SURNAME} (user, CVR {DEMO_CVR}), id {identity.id}
{order_lines}
  openssl req -new -newkey rsa:3072 -nodes -keyout demo.key -subj /CN=demo -outform DER \\
    | base64 > demo.csr.b64
  curl --fail-with-body --cacert {tls} -u {credentials} \\
    -H 'Content-Type: application/pkcs10' --data-binary @demo.csr.b64 \\
    {est}/simpleenroll | base64 -d | openssl pkcs7 -inform DER -print_certs \\
    | openssl x509 -out demo.pem
  curl --fail-with-body --cacert {tls} {est}/cacerts \\
    | base64 -d | openssl pkcs7 -inform DER -print_certs \\
    | sed -n '/-BEGIN CERTIFICATE-/,/-END CERTIFICATE-/p' > chain.pem
  openssl verify -CAfile {root} -untrusted chain.pem demo.pem
  openssl x509 -in demo.pem -noout -subject -nameopt utf8,sep_multiline

Renew with the certificate as TLS client certificate (a new key, the same subject):

  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out renewed.key
  openssl x509 -x509toreq -in demo.pem -key renewed.key -copy_extensions copy \\
    | openssl req -outform DER | base64 > renew.csr.b64
  curl --fail-with-body --cacert {tls} --cert demo.pem --key demo.key \\
    -H 'Content-Type: application/pkcs10' --data-binary @renew.csr.b64 \\
    {est}/simplereenroll | base64 -d | openssl pkcs7 -inform DER -print_certs \\
    | openssl x509 -out renewed.pem

Stop with Ctrl-C. Administer with `{command} --help`; another demo order: `{place_another}`.
"""
