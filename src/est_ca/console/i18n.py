"""The console's words in English and Danish: a dict per language, chosen per request.

A cookie set by the language switch wins; otherwise the browser's Accept-Language decides;
otherwise English. A key missing from Danish falls back to English, so a page never breaks.
"""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("en", "da")
DEFAULT = "en"

_EN = {
    "app": "est-ca console",
    "skip": "Skip to content",
    "nav": "Main",
    "overview": "Overview",
    "identities": "Identities",
    "certificates": "Certificates",
    "sign_in": "Sign in",
    "sign_out": "Sign out",
    "signed_in_as": "Signed in as",
    "organisation_only": "organisation",
    "all_organisations": "all organisations",
    "language": "Language",
    "token": "API token",
    "token_help": "Paste a token made with `est-ca token create`. It is not stored in the browser.",
    "use_certificate": "Sign in with your administrator certificate",
    "certificate_seen": "Your browser presented the certificate",
    "bad_token": "The token is unknown, expired or revoked.",
    "signed_out": "You are signed out.",
    "count_identities": "Identities",
    "count_issued": "Valid certificates",
    "count_pending": "Pending orders",
    "expiring": "Certificates expiring within 30 days",
    "none": "None.",
    "search": "Search",
    "search_label": "Name or email contains",
    "status": "Status",
    "type": "Type",
    "name": "Name",
    "email": "Email",
    "cvr": "CVR",
    "given_name": "Given name",
    "surname": "Surname",
    "display_name": "Display name (systems and organisations)",
    "create_identity": "Create identity",
    "new_identity": "New identity",
    "create": "Create",
    "identity": "Identity",
    "orders": "Orders",
    "place_order": "Place an order",
    "profile": "Profile",
    "default": "default",
    "reference": "Reference",
    "state": "State",
    "expires": "Expires",
    "serial": "Serial number",
    "subject": "Subject",
    "issuer": "Issuer",
    "not_before": "Valid from",
    "not_after": "Valid until",
    "key": "Public key",
    "revoked_at": "Revoked at",
    "reason": "Reason",
    "download_pem": "Download PEM",
    "revoke": "Revoke",
    "revoke_confirm": "Revoke this certificate?",
    "revoke_warning": "Revocation cannot be undone. Relying parties see it in OCSP at once.",
    "confirm_revoke": "Yes, revoke it",
    "cancel": "Cancel",
    "any": "any",
    "filter": "Filter",
    "one_time_code": "One-time code",
    "code_once": "This code is shown only now. Copy or print it; it is never shown again.",
    "code_gone": "The one-time code was shown once and is not shown again.",
    "copy": "Copy code",
    "copied": "Copied",
    "print": "Print hand-out",
    "handout_title": "Your certificate order",
    "handout_text": "Enroll with an EST client using the reference as user name and the code as "
    "password before the order expires.",
    "order": "Order",
    "error": "Error",
    "back": "Back to the overview",
    "forbidden_form": "The form was stale or came from elsewhere; reload the page and try again.",
    "actions": "Actions",
    "tokens": "API tokens",
    "new_token": "New token",
    "scopes": "Scopes",
    "optional_cvr": "empty: all organisations",
    "valid_days": "Valid for (days)",
    "last_used": "Last used",
    "revoked": "Revoked",
    "token_once": "This token is shown only now. Copy it; it is never shown again.",
    "token_gone": "The token was shown once and is not shown again.",
    "revoke_token_confirm": "Revoke this token?",
    "revoke_token_warning": "Whoever uses it is refused at once, here and in the API.",
}

_DA = {
    "app": "est-ca konsol",
    "skip": "Gå til indholdet",
    "nav": "Hovedmenu",
    "overview": "Overblik",
    "identities": "Identiteter",
    "certificates": "Certifikater",
    "sign_in": "Log ind",
    "sign_out": "Log ud",
    "signed_in_as": "Logget ind som",
    "organisation_only": "organisation",
    "all_organisations": "alle organisationer",
    "language": "Sprog",
    "token": "API-nøgle",
    "token_help": "Indsæt en nøgle lavet med `est-ca token create`. Den gemmes ikke i browseren.",
    "use_certificate": "Log ind med dit administratorcertifikat",
    "certificate_seen": "Din browser viste certifikatet",
    "bad_token": "Nøglen er ukendt, udløbet eller tilbagekaldt.",
    "signed_out": "Du er logget ud.",
    "count_identities": "Identiteter",
    "count_issued": "Gyldige certifikater",
    "count_pending": "Ventende bestillinger",
    "expiring": "Certifikater der udløber inden for 30 dage",
    "none": "Ingen.",
    "search": "Søg",
    "search_label": "Navn eller e-mail indeholder",
    "status": "Status",
    "type": "Type",
    "name": "Navn",
    "email": "E-mail",
    "cvr": "CVR",
    "given_name": "Fornavn",
    "surname": "Efternavn",
    "display_name": "Visningsnavn (systemer og organisationer)",
    "create_identity": "Opret identitet",
    "new_identity": "Ny identitet",
    "create": "Opret",
    "identity": "Identitet",
    "orders": "Bestillinger",
    "place_order": "Bestil et certifikat",
    "profile": "Profil",
    "default": "standard",
    "reference": "Reference",
    "state": "Tilstand",
    "expires": "Udløber",
    "serial": "Serienummer",
    "subject": "Subjekt",
    "issuer": "Udsteder",
    "not_before": "Gyldigt fra",
    "not_after": "Gyldigt til",
    "key": "Offentlig nøgle",
    "revoked_at": "Tilbagekaldt",
    "reason": "Årsag",
    "download_pem": "Hent PEM",
    "revoke": "Tilbagekald",
    "revoke_confirm": "Tilbagekald dette certifikat?",
    "revoke_warning": "Tilbagekaldelse kan ikke fortrydes. Modtagere ser den straks i OCSP.",
    "confirm_revoke": "Ja, tilbagekald det",
    "cancel": "Annullér",
    "any": "alle",
    "filter": "Filtrér",
    "one_time_code": "Engangskode",
    "code_once": "Koden vises kun nu. Kopiér eller udskriv den; den vises aldrig igen.",
    "code_gone": "Engangskoden blev vist én gang og vises ikke igen.",
    "copy": "Kopiér kode",
    "copied": "Kopieret",
    "print": "Udskriv seddel",
    "handout_title": "Din certifikatbestilling",
    "handout_text": "Hent certifikatet med en EST-klient med referencen som brugernavn og koden "
    "som adgangskode, før bestillingen udløber.",
    "order": "Bestilling",
    "error": "Fejl",
    "back": "Tilbage til overblikket",
    "forbidden_form": "Formularen var forældet eller kom udefra; genindlæs siden og prøv igen.",
    "actions": "Handlinger",
    "tokens": "API-nøgler",
    "new_token": "Ny nøgle",
    "scopes": "Rettigheder",
    "optional_cvr": "tom: alle organisationer",
    "valid_days": "Gyldig i (dage)",
    "last_used": "Sidst brugt",
    "revoked": "Tilbagekaldt",
    "token_once": "Nøglen vises kun nu. Kopiér den; den vises aldrig igen.",
    "token_gone": "Nøglen blev vist én gang og vises ikke igen.",
    "revoke_token_confirm": "Tilbagekald denne nøgle?",
    "revoke_token_warning": "Den afvises straks, her og i API'et.",
}

CATALOGUE: dict[str, dict[str, str]] = {"en": _EN, "da": _DA}


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The language to answer in: the switch's cookie, else Accept-Language by weight."""
    if cookie in LANGUAGES:
        return cookie
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and weight > 0:
            weighted.append((-weight, position, primary))
    return min(weighted)[2] if weighted else DEFAULT


def translator(language: str) -> Callable[[str], str]:
    words = CATALOGUE.get(language, _EN)
    return lambda key: words.get(key) or _EN.get(key, key)
