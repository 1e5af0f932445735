"""The OpenAPI 3.1 document of the admin API, served at /admin/v1/openapi.json.

tests/admin/test_openapi.py keeps it true: every route is documented and every documented
operation is routed, and the bodies the API returns match the schemas written here.
"""

from __future__ import annotations

from typing import Any

from est_ca.registration.orders import OrderState

_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_NULLABLE_TEXT = {"type": ["string", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


def _page_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "limit", "offset", "next_offset"],
        "properties": {
            "items": {"type": "array", "items": _ref(name)},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "next_offset": {"type": ["integer", "null"]},
        },
    }


_ERRORS = {
    "400": _problem("Malformed input; `field` names the field"),
    "401": _problem("No or invalid credentials"),
    "403": _problem(
        "The caller lacks the scope, or acts outside its organisation, or (for a change) the "
        "request comes from another origin"
    ),
    "404": _problem("No such object (or not visible to the caller)"),
    "408": _problem("The body did not arrive in time"),
    "409": _problem("The object's state forbids the change"),
    "413": _problem("The body is too large"),
    "415": _problem("The body has the wrong content type"),
    "429": _problem("Too many failed authentications from this address; see Retry-After"),
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _ERRORS[code] for code in sorted({"400", "401", "403", "429", *codes})}


def _change_errors(*codes: str) -> dict[str, Any]:
    """A state-changing operation reads a body: it may also be slow, too large or not JSON."""
    return _errors("408", "413", "415", *codes)


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


_IMPORT_BODY = {
    "required": True,
    "content": {
        media: {"schema": {"type": "string"}}
        for media in ("text/csv", "application/x-ndjson", "application/jsonl")
    },
}
_PAGING = [
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
        "Items per page (at most 500)",
    ),
    _query(
        "offset",
        {"type": "integer", "minimum": 0, "maximum": 1_000_000_000, "default": 0},
        "Items to skip (at most 10^9)",
    ),
]
_SECURITY: list[dict[str, list[str]]] = [
    {"token": []},
    {"certificate": []},
    {"systemCertificate": []},
]
_GRANTABLE = {"enum": ["read", "order", "revoke"]}
_IDM_EXAMPLE = """\
# An organisation's IdM, with the system certificate this CA issued it (idm.pem, idm.key):
API=https://ca.example.dk:8444/admin/v1
TOKEN=$(curl -sS --fail-with-body --cacert service-ca.pem --cert idm.pem --key idm.key \\
  -H 'Content-Type: application/json' -d '{}' "$API/idm/login" | jq -r .token)
# For the next hour, confined to the organisation's CVR and the granted scopes:
curl -sS --cacert service-ca.pem -H "Authorization: Bearer $TOKEN" "$API/identities?type=user"
curl -sS --cacert service-ca.pem -H "Authorization: Bearer $TOKEN" \\
  -H 'Content-Type: application/json' \\
  -d '{"type": "user", "cvr": "12345678", "display_name": "Jens Hansen", \\
       "email": "jens@example.dk"}' "$API/identities"
# Or without a token: the certificate on every request
curl -sS --cacert service-ca.pem --cert idm.pem --key idm.key "$API/identities"
"""


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


# Operations without fields still take JSON (or nothing), never a form: see the description.
_NO_FIELDS = {
    "required": False,
    "description": "Empty, or an empty JSON object",
    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": False}}},
}
_REASONS = [
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
]
_CVR = {"type": "string", "pattern": "^[0-9]{8}$"}
_NAME = {"type": "string", "minLength": 1, "maxLength": 64}


_SCHEMAS: dict[str, Any] = {
    "AdministrationGrant": {
        "type": "object",
        "additionalProperties": False,
        "required": ["identity_id", "scopes", "granted_by", "granted_at"],
        "properties": {
            "identity_id": {"type": "string", "format": "uuid"},
            "scopes": {"type": "array", "items": _GRANTABLE, "minItems": 1},
            "granted_by": {"type": "string"},
            "granted_at": _TIME,
        },
    },
    "AdministrationScopes": {
        "type": "object",
        "additionalProperties": False,
        "required": ["scopes"],
        "properties": {"scopes": {"type": "array", "items": _GRANTABLE, "minItems": 1}},
    },
    "IdmToken": {
        "type": "object",
        "additionalProperties": False,
        "required": ["token", "token_type", "expires_in", "expires_at", "cvr", "scopes"],
        "properties": {
            "token": {"type": "string", "description": "Shown once; give it as a Bearer token"},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer", "description": "Seconds (3600)"},
            "expires_at": _TIME,
            "cvr": _CVR,
            "scopes": {"type": "array", "items": _GRANTABLE},
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "field": {
                "type": "string",
                "description": "The input at fault: a field, a parameter, or `body` as a whole",
            },
            "errors": {
                "type": "array",
                "description": "Every error of an import, by line",
                "items": {
                    "type": "object",
                    "required": ["line", "field", "detail"],
                    "properties": {
                        "line": {"type": "integer"},
                        "field": _NULLABLE_TEXT,
                        "detail": {"type": "string"},
                    },
                },
            },
        },
    },
    "Identity": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "id",
            "type",
            "display_name",
            "organisation_name",
            "cvr",
            "given_name",
            "surname",
            "email",
            "status",
            "external_id",
            "created_at",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "type": {"enum": ["user", "organisation", "system"]},
            "display_name": {"type": "string"},
            "organisation_name": {"type": "string"},
            "cvr": {"type": "string", "pattern": "^[0-9]{8}$"},
            "given_name": _NULLABLE_TEXT,
            "surname": _NULLABLE_TEXT,
            "email": _NULLABLE_TEXT,
            "status": {"enum": ["active", "disabled", "staged"]},
            "external_id": _NULLABLE_TEXT,
            "created_at": _TIME,
        },
    },
    "Organisation": {
        "type": "object",
        "additionalProperties": False,
        "required": ["cvr", "name", "email_domains", "status", "created_at"],
        "properties": {
            "cvr": {"type": "string", "pattern": "^[0-9]{8}$"},
            "name": {"type": "string", "description": "The O of its identities' certificates"},
            "email_domains": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Domains its identities' email addresses may use",
            },
            "status": {"enum": ["active", "disabled"]},
            "created_at": _TIME,
        },
    },
    "NewOrganisation": {
        "type": "object",
        "additionalProperties": False,
        "required": ["cvr", "name"],
        "properties": {
            "cvr": {"type": "string", "pattern": "^[0-9]{8}$"},
            "name": {"type": "string", "maxLength": 64},
            "email_domains": {"type": "array", "items": {"type": "string"}},
        },
    },
    "OrganisationChanges": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "maxLength": 64},
            "email_domains": {"type": "array", "items": {"type": "string"}},
            "status": {"enum": ["active", "disabled"]},
        },
    },
    "OrganisationImport": {
        "type": "object",
        "required": ["created", "existing"],
        "properties": {
            "created": {"type": "array", "items": _ref("Organisation")},
            "existing": {"type": "array", "items": _ref("Organisation")},
        },
    },
    "NewIdentity": {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "cvr"],
        "properties": {
            "type": {"enum": ["user", "organisation", "system"]},
            "organisation_name": _NAME
            | {"description": "Optional; if given, the organisation's registered name"},
            "cvr": _CVR,
            "display_name": _NAME | {"description": "The CN; for users the full name by default"},
            "given_name": _NAME,
            "surname": _NAME,
            "email": {
                "type": "string",
                "maxLength": 255,
                "description": "ASCII only: it becomes an rfc822Name",
            },
        },
        "if": {"properties": {"type": {"const": "user"}}},
        "then": {"required": ["given_name", "surname", "email"]},
        "else": {"required": ["display_name"]},
    },
    "IdentityChanges": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **dict.fromkeys(("display_name", "given_name", "surname"), _NAME),
            "email": {"type": "string", "maxLength": 255},
        },
    },
    "DisabledIdentity": {
        "allOf": [
            _ref("IdentityBase"),
            {
                "type": "object",
                "required": ["revoked"],
                "properties": {"revoked": {"type": "array", "items": {"type": "string"}}},
            },
        ]
    },
    "Order": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "reference",
            "identity_id",
            "profile",
            "ca_label",
            "state",
            "failed_attempts",
            "created_at",
            "expires_at",
            "certificate_serial",
            "require_approval",
        ],
        "properties": {
            "reference": {"type": "string"},
            "identity_id": {"type": "string", "format": "uuid"},
            "profile": {"type": "string"},
            "ca_label": {
                "type": ["string", "null"],
                "description": "The CA label to enroll under; null: the default CA",
            },
            "state": {
                "enum": [
                    "pending",
                    "issuing",
                    "consumed",
                    "cancelled",
                    "expired",
                    "locked",
                    "staged",
                ]
            },
            "failed_attempts": {"type": "integer"},
            "created_at": _TIME,
            "expires_at": _TIME,
            "certificate_serial": _NULLABLE_TEXT,
            "require_approval": {
                "type": "boolean",
                "description": "Enrollment waits (202) until a request is approved",
            },
        },
    },
    "EnrollmentRequest": {
        "type": "object",
        "additionalProperties": False,
        "description": "The CSR an approval-requiring order was enrolled with (RFC 7030 4.2.3)",
        "required": [
            "order_reference",
            "identity_id",
            "status",
            "csr_sha256",
            "csr_subject",
            "csr_pem",
            "created_at",
            "decided_at",
            "decided_by",
            "reason",
        ],
        "properties": {
            "order_reference": {"type": "string"},
            "identity_id": {"type": "string", "format": "uuid"},
            "status": {"enum": ["pending", "approved", "rejected"]},
            "csr_sha256": {"type": "string", "description": "SHA-256 of the CSR's DER"},
            "csr_subject": _NULLABLE_TEXT,
            "csr_pem": _NULLABLE_TEXT,
            "created_at": _TIME,
            "decided_at": _NULLABLE_TIME,
            "decided_by": _NULLABLE_TEXT,
            "reason": _NULLABLE_TEXT,
        },
    },
    "RequestRejection": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "reason": {
                "type": "string",
                "maxLength": 500,
                "description": "Told to the client on its next retry",
            }
        },
    },
    "PlacedOrder": {
        "description": "An order with its one-time code: the only time the code is shown",
        "allOf": [
            _ref("OrderBase"),
            {
                "type": "object",
                "required": ["one_time_code"],
                "properties": {"one_time_code": {"type": "string"}},
            },
        ],
    },
    "NewOrder": {
        "type": "object",
        "additionalProperties": False,
        "required": ["identity_id"],
        "properties": {
            "identity_id": {"type": "string", "format": "uuid"},
            "profile": {"type": "string", "description": "Default: the identity type's"},
            "validity_days": {"type": "integer", "minimum": 1, "maximum": 365},
            "ca_label": {
                "type": "string",
                "description": "The CA label it is enrolled under (/.well-known/est/<label>/). "
                "Default: the default CA's",
            },
            "require_approval": {
                "type": "boolean",
                "description": "Enrollment stores the CSR and answers 202 until an "
                "administrator approves it (default false)",
            },
        },
    },
    "Certificate": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "serial",
            "issuer_key_id",
            "identity_id",
            "profile",
            "status",
            "subject",
            "not_before",
            "not_after",
            "renewal_of",
            "revoked_at",
            "revocation_reason",
            "invalidity_date",
        ],
        "properties": {
            "serial": {"type": "string"},
            "issuer_key_id": {"type": "string", "description": "The issuing CA's key id"},
            "identity_id": {"type": "string", "format": "uuid"},
            "profile": {"type": "string"},
            "status": {"enum": ["reserved", "issued", "revoked", "abandoned"]},
            "subject": _NULLABLE_TEXT,
            "not_before": _NULLABLE_TIME,
            "not_after": _NULLABLE_TIME,
            "renewal_of": _NULLABLE_TEXT,
            "revoked_at": _NULLABLE_TIME,
            "revocation_reason": _NULLABLE_TEXT,
            "invalidity_date": _NULLABLE_TIME,
            "pem": {"type": ["string", "null"], "description": "Only when read by serial"},
        },
    },
    "Revocation": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "reason": {"enum": _REASONS},
            "invalidity_date": _TIME
            | {
                "description": "When the key was (suspected) compromised: within the "
                "certificate's validity and not in the future"
            },
        },
    },
    "ImportResult": {
        "type": "object",
        "required": ["created", "existing", "orders"],
        "properties": {
            "created": {"type": "array", "items": _ref("Identity")},
            "existing": {"type": "array", "items": _ref("Identity")},
            "orders": {"type": "array", "items": _ref("PlacedOrder")},
        },
    },
    "CrlRegeneration": {
        "type": "object",
        "required": ["crls"],
        "properties": {
            "crls": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["ca", "number", "this_update", "next_update"],
                    "properties": {
                        "ca": {"type": "string"},
                        "number": {"type": "integer"},
                        "this_update": _TIME,
                        "next_update": _TIME,
                    },
                },
            }
        },
    },
}
# Open variants for composition (allOf cannot extend a schema that forbids extra properties).
_SCHEMAS["IdentityBase"] = {**_SCHEMAS["Identity"], "additionalProperties": True}
_SCHEMAS["OrderBase"] = {**_SCHEMAS["Order"], "additionalProperties": True}

_IDENTITY_ID = _path("identity_id", {"type": "string", "format": "uuid"}, "The identity's UUID")
_REFERENCE = _path(
    "reference",
    {"type": "string", "pattern": "^[0-9A-Za-z -]{1,64}$"},
    "The order reference (case, dashes and spaces are ignored)",
)
_SERIAL = _path(
    "serial", {"type": "string", "pattern": "^[0-9A-Fa-f]{1,40}$"}, "The certificate serial"
)
_ISSUER = _query(
    "issuer",
    {"type": "string", "pattern": "^[0-9A-Fa-f:]{2,191}$"},
    "The issuing CA's key id (hex); needed only when several CAs issued the serial (else 409)",
)


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "est-ca administration",
            "version": "1",
            "description": (
                "Identities, orders, certificates and revocation. Authenticate with "
                "'Authorization: Bearer <token>' (tokens are made with `est-ca token create`; "
                "scopes read, order, revoke, admin; a token may be confined to one CVR) or "
                "with an administrator client certificate. An organisation's IdM uses a "
                "system certificate this CA issued it, once an administrator granted that "
                "identity the administration right (PUT /identities/{id}/administration): it "
                "logs in at POST /idm/login over mutual TLS for a Bearer token valid for one "
                "hour, or presents the certificate on each request; both are confined to its "
                "CVR and the granted scopes, and end at once when the certificate is revoked "
                "or the right withdrawn. Example IdM session:\n\n```sh\n"
                + _IDM_EXAMPLE
                + "```\n\nA change (POST, PUT, PATCH, DELETE) takes "
                "application/json (the import also text/csv or application/x-ndjson), even "
                "where it has no fields (send {} or nothing), and is refused when its Origin "
                "is not this listener's or Sec-Fetch-Site is cross-site or same-site: no other "
                "site's page can act with an administrator's browser certificate."
            ),
        },
        "servers": [{"url": "/admin/v1"}],
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer"},
                "certificate": {
                    "type": "mutualTLS",
                    "description": "An administrator's certificate from the admin trust anchor",
                },
                "systemCertificate": {
                    "type": "mutualTLS",
                    "description": (
                        "A system certificate this CA issued to an identity granted the "
                        "administration right: confined to its CVR and granted scopes"
                    ),
                },
            },
        },
        "security": _SECURITY,
        "paths": {
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "Alive")},
                }
            },
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "summary": "Readiness",
                    "security": [],
                    "responses": {
                        "200": _json({"type": "object"}, "Ready"),
                        "503": _json({"type": "object"}, "Not ready"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text exposition format); needs the read scope",
                    "description": (
                        "The counters are CA-wide, so they need an unconfined principal: a "
                        "token with the read (or admin) scope and no CVR. An organisation's "
                        "token or IdM is refused with 403."
                    ),
                    "responses": {
                        "200": {
                            "description": "Metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                }
            },
            "/organisations": {
                "get": {
                    "operationId": "listOrganisations",
                    "summary": "List organisations (a confined token sees its own)",
                    "parameters": [
                        _query("status", {"enum": ["active", "disabled"]}, "Status"),
                        *_PAGING,
                    ],
                    "responses": {
                        "200": _json(_page_of("Organisation"), "A page"),
                        **_errors(),
                    },
                },
                "post": {
                    "operationId": "createOrganisation",
                    "summary": "Register an organisation (administrators of the CA only)",
                    "requestBody": _body(_ref("NewOrganisation")),
                    "responses": {
                        "201": _json(_ref("Organisation"), "Created"),
                        **_change_errors("409"),
                    },
                },
            },
            "/organisations/import": {
                "post": {
                    "operationId": "importOrganisations",
                    "summary": "Import organisations (administrators of the CA only; all or none)",
                    "requestBody": _IMPORT_BODY,
                    "responses": {
                        "200": _json(_ref("OrganisationImport"), "Nothing new"),
                        "201": _json(_ref("OrganisationImport"), "Imported"),
                        **_change_errors(),
                    },
                }
            },
            "/organisations/{cvr}": {
                "parameters": [_path("cvr", _CVR, "The organisation's CVR")],
                "get": {
                    "operationId": "readOrganisation",
                    "summary": "Read an organisation",
                    "responses": {
                        "200": _json(_ref("Organisation"), "The organisation"),
                        **_errors("404"),
                    },
                },
                "patch": {
                    "operationId": "updateOrganisation",
                    "summary": "Change an organisation (administrators of the CA only)",
                    "requestBody": _body(_ref("OrganisationChanges")),
                    "responses": {
                        "200": _json(_ref("Organisation"), "Changed"),
                        **_change_errors("404"),
                    },
                },
            },
            "/identities": {
                "get": {
                    "operationId": "listIdentities",
                    "summary": "List identities",
                    "parameters": [
                        _query("type", {"enum": ["user", "organisation", "system"]}, "Type"),
                        _query("cvr", _CVR, "Organisation"),
                        _query("status", {"enum": ["active", "disabled"]}, "Status"),
                        *_PAGING,
                    ],
                    "responses": {"200": _json(_page_of("Identity"), "A page"), **_errors()},
                },
                "post": {
                    "operationId": "createIdentity",
                    "summary": "Create an identity",
                    "requestBody": _body(_ref("NewIdentity")),
                    "responses": {
                        "201": _json(_ref("Identity"), "Created"),
                        **_change_errors(),
                    },
                },
            },
            "/identities/import": {
                "post": {
                    "operationId": "importIdentities",
                    "summary": "Import identities (all rows or none; idempotent on external_id)",
                    "parameters": [
                        _query(
                            "place_orders",
                            {"enum": ["true", "false"]},
                            "Order a certificate for each new identity",
                        )
                    ],
                    "requestBody": _IMPORT_BODY,
                    "responses": {
                        "200": _json(_ref("ImportResult"), "Nothing new"),
                        "201": _json(_ref("ImportResult"), "Imported"),
                        **_change_errors("409"),
                    },
                }
            },
            "/identities/{identity_id}": {
                "parameters": [_IDENTITY_ID],
                "get": {
                    "operationId": "readIdentity",
                    "summary": "Read an identity",
                    "responses": {"200": _json(_ref("Identity"), "The identity"), **_errors("404")},
                },
                "patch": {
                    "operationId": "updateIdentity",
                    "summary": "Change names or email",
                    "requestBody": _body(_ref("IdentityChanges")),
                    "responses": {
                        "200": _json(_ref("Identity"), "Updated"),
                        **_change_errors("404"),
                    },
                },
            },
            "/identities/{identity_id}/administration": {
                "parameters": [_IDENTITY_ID],
                "get": {
                    "operationId": "readAdministration",
                    "summary": "The identity's administration right (404: none)",
                    "responses": {
                        "200": _json(_ref("AdministrationGrant"), "The right"),
                        **_errors("404"),
                    },
                },
                "put": {
                    "operationId": "grantAdministration",
                    "summary": (
                        "Let a system identity (an organisation's IdM) administer its "
                        "organisation's identities with these scopes; an unconfined "
                        "administrator only"
                    ),
                    "requestBody": _body(_ref("AdministrationScopes")),
                    "responses": {
                        "200": _json(_ref("AdministrationGrant"), "Granted"),
                        **_change_errors("404", "409"),
                    },
                },
                "delete": {
                    "operationId": "withdrawAdministration",
                    "summary": (
                        "Withdraw the right: the IdM's certificate and tokens are refused from "
                        "the next request on; an unconfined administrator only"
                    ),
                    "requestBody": _NO_FIELDS,
                    "responses": {"204": {"description": "Withdrawn"}, **_change_errors("404")},
                },
            },
            "/idm/login": {
                "post": {
                    "operationId": "idmLogin",
                    "summary": (
                        "An organisation's IdM logs in with its system certificate (mutual "
                        "TLS) for a Bearer token valid for one hour"
                    ),
                    "description": (
                        "Only the TLS client certificate counts (no token): one this CA "
                        "issued, not revoked or expired, of an active system identity of an "
                        "active organisation that holds the administration right. Anything "
                        "else is 403 with the reason. At most five tokens of one certificate "
                        "are live: a sixth login revokes the oldest. Example:\n\n```sh\n"
                        + _IDM_EXAMPLE
                        + "```"
                    ),
                    "security": [{"systemCertificate": []}],
                    "requestBody": _NO_FIELDS,
                    "responses": {
                        "201": _json(_ref("IdmToken"), "Logged in"),
                        **{
                            code: response
                            for code, response in _change_errors().items()
                            if code != "401"
                        },
                    },
                }
            },
            "/identities/{identity_id}/disable": {
                "parameters": [_IDENTITY_ID],
                "post": {
                    "operationId": "disableIdentity",
                    "summary": "Disable: cancel its orders, revoke its certificates",
                    "requestBody": _body(
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"reason": {"enum": _REASONS}},
                        }
                    ),
                    "responses": {
                        "200": _json(_ref("DisabledIdentity"), "Disabled"),
                        **_change_errors("404", "409"),
                    },
                },
            },
            "/orders": {
                "get": {
                    "operationId": "listOrders",
                    "summary": "List orders",
                    "parameters": [
                        _query("identity_id", {"type": "string", "format": "uuid"}, "Identity"),
                        _query(
                            "status",
                            {"enum": [state.value for state in OrderState]},
                            "Only orders in this state (as their `state` field shows it)",
                        ),
                        *_PAGING,
                    ],
                    "responses": {"200": _json(_page_of("Order"), "A page"), **_errors("404")},
                },
                "post": {
                    "operationId": "createOrder",
                    "summary": "Order a certificate",
                    "requestBody": _body(_ref("NewOrder")),
                    "responses": {
                        "201": _json(_ref("PlacedOrder"), "Placed"),
                        **_change_errors("404", "409"),
                    },
                },
            },
            "/orders/{reference}": {
                "parameters": [_REFERENCE],
                "get": {
                    "operationId": "readOrder",
                    "summary": "Read an order",
                    "responses": {"200": _json(_ref("Order"), "The order"), **_errors("404")},
                },
            },
            "/orders/{reference}/cancel": {
                "parameters": [_REFERENCE],
                "post": {
                    "operationId": "cancelOrder",
                    "summary": "Cancel a pending order",
                    "requestBody": _NO_FIELDS,
                    "responses": {
                        "200": _json(_ref("Order"), "Cancelled"),
                        **_change_errors("404", "409"),
                    },
                },
            },
            "/orders/{reference}/unlock": {
                "parameters": [_REFERENCE],
                "post": {
                    "operationId": "unlockOrder",
                    "summary": "Unlock an order locked by wrong one-time codes",
                    "requestBody": _NO_FIELDS,
                    "responses": {
                        "200": _json(_ref("Order"), "Unlocked"),
                        **_change_errors("404", "409"),
                    },
                },
            },
            "/requests": {
                "get": {
                    "operationId": "listRequests",
                    "summary": "List enrollment requests awaiting (or past) approval",
                    "parameters": [
                        _query(
                            "status",
                            {"enum": ["pending", "approved", "rejected"]},
                            "Only requests with this status",
                        ),
                        *_PAGING,
                    ],
                    "responses": {
                        "200": _json(_page_of("EnrollmentRequest"), "A page, oldest first"),
                        **_errors("404"),
                    },
                },
            },
            "/requests/{reference}": {
                "parameters": [_REFERENCE],
                "get": {
                    "operationId": "readRequest",
                    "summary": "Read the enrollment request of an order",
                    "responses": {
                        "200": _json(_ref("EnrollmentRequest"), "The request"),
                        **_errors("404"),
                    },
                },
            },
            "/requests/{reference}/approve": {
                "parameters": [_REFERENCE],
                "post": {
                    "operationId": "approveRequest",
                    "summary": "Approve: the client's retry with the same CSR is issued",
                    "requestBody": _NO_FIELDS,
                    "responses": {
                        "200": _json(_ref("EnrollmentRequest"), "Approved"),
                        **_change_errors("404", "409"),
                    },
                },
            },
            "/requests/{reference}/reject": {
                "parameters": [_REFERENCE],
                "post": {
                    "operationId": "rejectRequest",
                    "summary": "Reject: the client's retry is refused, the order cancelled",
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("RequestRejection")}},
                    },
                    "responses": {
                        "200": _json(_ref("EnrollmentRequest"), "Rejected"),
                        **_change_errors("400", "404", "409"),
                    },
                },
            },
            "/certificates": {
                "get": {
                    "operationId": "listCertificates",
                    "summary": "List certificates",
                    "parameters": [
                        _query("identity_id", {"type": "string", "format": "uuid"}, "Identity"),
                        _query(
                            "status",
                            {"enum": ["reserved", "issued", "revoked", "abandoned"]},
                            "Status",
                        ),
                        _query("expires_after", _TIME, "notAfter later than this"),
                        _query("expires_before", _TIME, "notAfter at or before this"),
                        _query(
                            "expiring_within_days",
                            {"type": "integer", "minimum": 1, "maximum": 3650},
                            "Issued, unexpired, and notAfter within this many days from now "
                            "(renewal due)",
                        ),
                        *_PAGING,
                    ],
                    "responses": {
                        "200": _json(_page_of("Certificate"), "A page"),
                        **_errors("404"),
                    },
                }
            },
            "/certificates/{serial}": {
                "parameters": [_SERIAL, _ISSUER],
                "get": {
                    "operationId": "readCertificate",
                    "summary": "Read a certificate, with PEM",
                    "responses": {
                        "200": _json(_ref("Certificate"), "The certificate"),
                        **_errors("404", "409"),
                    },
                },
            },
            "/certificates/{serial}/revoke": {
                "parameters": [_SERIAL, _ISSUER],
                "post": {
                    "operationId": "revokeCertificate",
                    "summary": "Revoke (final)",
                    "requestBody": _body(_ref("Revocation")),
                    "responses": {
                        "200": _json(_ref("Certificate"), "Revoked"),
                        **_change_errors("404", "409"),
                    },
                },
            },
            "/crl/regenerate": {
                "post": {
                    "operationId": "regenerateCrls",
                    "summary": "Sign new CRLs now (unconfined admin only)",
                    "requestBody": _NO_FIELDS,
                    "responses": {
                        "200": _json(_ref("CrlRegeneration"), "Published"),
                        **_change_errors("404"),
                    },
                }
            },
        },
    }
