#!/usr/bin/env bash
# An organisation's IdM administering its identities on est-ca with its system certificate.
#
# The system certificate was issued by est-ca to a system identity of the organisation, and an
# administrator of the CA granted that identity the administration right:
#   est-ca identity grant-administration <identity id> --scopes read,order
#
# Environment:
#   EST_CA_ADMIN   the admin listener, e.g. https://ca.example.dk:8444
#   EST_CA_TRUST   the CA certificate(s) that verify the listener's TLS certificate
#   IDM_CERT       the system certificate (PEM) and IDM_KEY its private key (PEM)
#   IDM_CVR        the organisation's CVR number
#   IDM_EMAIL      a new user's email address, in one of the organisation's email domains
#
# Prints every call (the token and the one-time code elided) with its HTTP status and JSON,
# and stops at the first unexpected status. Needs curl and jq.
set -euo pipefail

API="${EST_CA_ADMIN:?set EST_CA_ADMIN}/admin/v1"
TRUST="${EST_CA_TRUST:?set EST_CA_TRUST}"
CERT="${IDM_CERT:?set IDM_CERT}"
KEY="${IDM_KEY:?set IDM_KEY}"
CVR="${IDM_CVR:?set IDM_CVR}"
EMAIL="${IDM_EMAIL:-jens.hansen@example.dk}"
BODY="$(mktemp)"
trap 'rm -f "$BODY"' EXIT

# call EXPECTED_STATUS SHOWN_COMMAND CURL_ARGS...: run curl, print status and (elided) JSON.
call() {
    local expected="$1" shown="$2"
    shift 2
    echo "\$ ${shown/curl /curl --cacert trust.pem }"
    local status
    status="$(curl -sS --cacert "$TRUST" -o "$BODY" -w '%{http_code}' "$@")"
    echo "HTTP $status"
    jq '(.. | objects | select(has("token")) | .token) |= "estca_…(elided)"
        | (.. | objects | select(has("one_time_code")) | .one_time_code) |= "…(elided)"' \
        "$BODY" 2>/dev/null || cat "$BODY"
    if [ "$status" != "$expected" ]; then
        echo "expected HTTP $expected" >&2
        exit 1
    fi
}

# 1. Log in with the system certificate (mutual TLS): a Bearer token valid for one hour.
call 201 "curl --cert idm.pem --key idm.key -H 'Content-Type: application/json' -d '{}' $API/idm/login" \
    --cert "$CERT" --key "$KEY" -H 'Content-Type: application/json' -d '{}' "$API/idm/login"
TOKEN="$(jq -r .token "$BODY")"
AUTH="Authorization: Bearer $TOKEN"

# 2. The organisation's identities (the token sees no other organisation's).
call 200 "curl -H 'Authorization: Bearer \$TOKEN' '$API/identities?limit=5'" \
    -H "$AUTH" "$API/identities?limit=5"

# 3. A new user of the organisation.
NEW_USER="$(jq -cn --arg cvr "$CVR" --arg email "$EMAIL" \
    '{type: "user", cvr: $cvr, given_name: "Jens", surname: "Hansen", email: $email}')"
call 201 "curl -H 'Authorization: Bearer \$TOKEN' -H 'Content-Type: application/json' -d '$NEW_USER' $API/identities" \
    -H "$AUTH" -H 'Content-Type: application/json' -d "$NEW_USER" "$API/identities"
IDENTITY="$(jq -r .id "$BODY")"

# 4. An order of a certificate for it: the reference and one-time code go to the user.
ORDER="{\"identity_id\": \"$IDENTITY\"}"
call 201 "curl -H 'Authorization: Bearer \$TOKEN' -H 'Content-Type: application/json' -d '$ORDER' $API/orders" \
    -H "$AUTH" -H 'Content-Type: application/json' -d "$ORDER" "$API/orders"

# 5. Without a token: the system certificate on the request itself works as well.
call 200 "curl --cert idm.pem --key idm.key $API/identities/$IDENTITY" \
    --cert "$CERT" --key "$KEY" "$API/identities/$IDENTITY"
