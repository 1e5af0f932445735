"""Demo mode: a demo identity, a fresh order at every start, and a recipe to paste."""

from __future__ import annotations

import shlex

from est_ca.audit import Actor
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
    async with service.store.read() as tx:
        registered = await tx.get_organisation(DEMO_CVR)
    if registered is None:
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


async def place_demo_order(service: Service) -> PlacedOrder:
    identity = await demo_identity(service)
    return await service.registry.place_order(DEMO_ACTOR, identity.id)


def recipe(service: Service, https_url: str, placed: PlacedOrder) -> str:
    """Commands that enroll the demo order with openssl and curl, ready to paste."""
    files = service.files
    tls = shlex.quote(str(files.tls_cert.resolve()))
    root = shlex.quote(str((files.demo_root or files.ca_chain).resolve()))
    est = f"{https_url}/.well-known/est"
    order = placed.order
    credentials = shlex.quote(f"{order.reference}:{placed.one_time_code}")
    return f"""
est-ca is running with a DEMO CA (Test - not for production).
  EST:            {est}/
  demo identity:  {DEMO_GIVEN_NAME} {DEMO_SURNAME} (user, CVR {DEMO_CVR})
  demo order:     {order.reference}, valid until {order.expires_at:%Y-%m-%d %H:%M}Z

Enroll from another terminal (the one-time code works once):

  openssl req -new -newkey rsa:3072 -nodes -keyout demo.key -subj /CN=demo -outform DER \\
    | base64 > demo.csr.b64
  curl --fail-with-body --cacert {tls} -u {credentials} \\
    -H 'Content-Type: application/pkcs10' --data-binary @demo.csr.b64 \\
    {est}/simpleenroll | base64 -d | openssl pkcs7 -inform DER -print_certs -out demo.pem
  curl --fail-with-body --cacert {tls} {est}/cacerts \\
    | base64 -d | openssl pkcs7 -inform DER -print_certs -out chain.pem
  openssl verify -CAfile {root} -untrusted chain.pem demo.pem
  openssl x509 -in demo.pem -noout -subject -nameopt utf8,sep_multiline

Renew with the certificate as TLS client certificate (new key, same subject):

  openssl x509 -x509toreq -in demo.pem -signkey demo.key -copy_extensions copy \\
    | openssl req -outform DER | base64 > renew.csr.b64
  curl --fail-with-body --cacert {tls} --cert demo.pem --key demo.key \\
    -H 'Content-Type: application/pkcs10' --data-binary @renew.csr.b64 \\
    {est}/simplereenroll | base64 -d | openssl pkcs7 -inform DER -print_certs -out renewed.pem

Stop with Ctrl-C. Administer with `est-ca --help`.
"""
