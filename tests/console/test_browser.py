"""The console in a real browser (Debian's Chromium driven by Playwright) on a real admin listener.

Each test starts from a fresh browser profile; the listener and the browser are the module's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from playwright.sync_api import BrowserContext, Page, expect

from est_ca.registration.identities import IdentityType
from tests.console.conftest import Console
from tests.helpers import ADMIN, PKCS10, KeyPool, curl_est, openssl, pem, print_certs, run

AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe.min.js"
SERIOUS = ("serious", "critical")


def sign_in(page: Page, console: Console, token: str) -> None:
    page.goto(console.url)
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")


def accessibility_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as shown (CSP does not apply to
    what Playwright evaluates, so the page's own policy stays strict)."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result: dict[str, Any] = page.evaluate("axe.run(document)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in result["violations"]
        if v["impact"] in SERIOUS
    ]


def session_cookies(context: BrowserContext) -> list[Any]:
    return [c for c in context.cookies() if c["name"] == "est_ca_console"]


def test_a_token_signs_in_and_sign_out_ends_the_session(
    console: Console, context: BrowserContext, page: Page, screenshots: Path
) -> None:
    sign_in(page, console, console.token("console-signin", "admin"))
    (cookie,) = session_cookies(context)
    assert cookie["httpOnly"]
    assert cookie["secure"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console/"
    page.screenshot(path=screenshots / "console-overview.png", full_page=True)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/sign-in\?signed_out$"))
    assert session_cookies(context) == []
    # The session is gone on the server too: the old cookie, put back, opens nothing.
    context.add_cookies([cookie])
    page.goto(console.url)
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))


def test_a_wrong_token_is_refused_on_the_sign_in_page(console: Console, page: Page) -> None:
    page.goto(console.url + "sign-in")
    page.get_by_label("API token").fill("estca_" + "0" * 32 + "_" + "A" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("The token is unknown, expired or revoked.")


def test_pages_carry_a_strict_content_security_policy(console: Console, page: Page) -> None:
    response = page.goto(console.url + "sign-in")
    assert response is not None
    headers = response.headers
    policy = headers["content-security-policy"]
    assert policy.startswith("default-src 'none'; style-src 'self'; script-src 'self';")
    assert "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"


def test_danish_from_accept_language_and_the_switch_back_to_english(
    console: Console, browser: Any
) -> None:
    context = browser.new_context(ignore_https_errors=True, locale="da-DK")
    try:
        page = context.new_page()
        page.goto(console.url + "sign-in")
        expect(page.get_by_role("heading", level=1)).to_have_text("Log ind")
        assert page.locator("html").get_attribute("lang") == "da"
        page.get_by_role("link", name="EN").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
        assert page.locator("html").get_attribute("lang") == "en"
    finally:
        context.close()


def test_an_identity_is_ordered_enrolled_by_curl_and_revoked_until_ocsp_says_so(
    console: Console, page: Page, screenshots: Path, tmp_path: Path, keys: KeyPool
) -> None:
    sign_in(page, console, console.token("console-life", "admin"))
    page.get_by_role("link", name="Identities").click()
    page.get_by_role("link", name="New identity").click()
    page.get_by_label("Type").select_option("system")
    page.get_by_label("CVR").fill("34051178")
    page.get_by_label("Display name").fill("billing.console")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("billing.console")
    identity_url = page.url

    page.get_by_role("button", name="Place an order").click()
    code_element = page.locator("#one-time-code")
    expect(code_element).to_be_visible()
    expect(page.get_by_role("button", name="Copy code")).to_be_visible()
    reference = page.locator("#reference").inner_text().strip()
    code = code_element.inner_text().strip()
    page.screenshot(path=screenshots / "console-one-time-code.png", full_page=True)
    # The copy button (console.js, allowed by the CSP) puts the code on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy code").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == code
    # The printed hand-out has its title and instructions, and no navigation.
    page.emulate_media(media="print")
    expect(page.get_by_text("Your certificate order")).to_be_visible()
    expect(page.get_by_role("navigation")).to_be_hidden()
    page.emulate_media(media="screen")
    # Shown once: a reload, or coming back to the page, shows no code.
    page.reload()
    expect(page.locator("#code-gone")).to_be_visible()
    assert code not in page.content()
    page.goto(identity_url)
    page.go_back()
    expect(page.locator("#code-gone")).to_be_visible()
    assert code not in page.content()

    certificate = enroll_with_curl(console, reference, code, keys.rsa(0).path, tmp_path)
    serial = format(certificate.serial_number, "040x")
    page.goto(identity_url)
    row = page.get_by_role("link", name=serial)
    expect(row).to_be_visible()
    page.screenshot(path=screenshots / "console-identity.png", full_page=True)

    row.click()
    expect(page.locator("#certificate-status")).to_have_text("issued")
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(pem([certificate]))
    assert f"{leaf}: good" in openssl_ocsp(console, leaf, tmp_path)
    page.get_by_role("link", name="Revoke").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Revoke this certificate?")
    page.get_by_label("Reason").select_option("cessationOfOperation")
    page.get_by_role("button", name="Yes, revoke it").click()
    expect(page.locator("#certificate-status")).to_have_text("revoked")
    expect(page.locator("#revocation-reason")).to_have_text("cessationOfOperation")
    answer = openssl_ocsp(console, leaf, tmp_path)
    assert f"{leaf}: revoked" in answer, answer
    assert "Reason: cessationOfOperation" in answer


def enroll_with_curl(
    console: Console, reference: str, code: str, key: Path, tmp: Path
) -> x509.Certificate:
    """What a system's operator does with the hand-out: curl, an openssl CSR, Basic auth."""
    der = console.call(
        openssl("req", "-new", "-key", key, "-subj", "/CN=made by openssl", "-outform", "DER")
    )
    body = tmp / "enroll.b64"
    body.write_bytes(console.call(openssl("base64", input=der)))
    response = console.call(
        curl_est(
            console.server,
            "simpleenroll",
            body,
            "-u",
            f"{reference}:{code}",
            *PKCS10,
            trust=console.ca.tls_cert,
        )
    )
    assert response.status == 200, response.text
    (certificate,) = console.call(print_certs(response.body))
    return certificate


def openssl_ocsp(console: Console, leaf: Path, tmp: Path) -> str:
    """The service's OCSP responder asked by `openssl ocsp`, the answer verified."""
    issuer = tmp / "issuer.pem"
    issuer.write_bytes(console.ca.hierarchy.issuing_cert.read_bytes())
    result = console.call(
        run(
            "openssl",
            "ocsp",
            "-issuer",
            issuer,
            "-cert",
            leaf,
            "-url",
            console.service.publication.ocsp_url,
            "-CAfile",
            console.ca.hierarchy.root_cert,
        )
    )
    assert result.returncode == 0, result.stderr.decode()
    answer = (result.stdout + result.stderr).decode()
    assert "Response verify OK" in answer, answer
    return answer


def test_a_confined_administrator_gets_404_for_another_organisations_identity(
    console: Console, page: Page
) -> None:
    other = console.call(
        console.service.registry.create_identity(
            ADMIN,
            type=IdentityType.SYSTEM,
            organisation_name=None,
            cvr="96908409",
            display_name="elsewhere.system",
        )
    )
    sign_in(page, console, console.token("console-confined", "read,order", cvr="99999999"))
    response = page.goto(f"{console.url}identities/{other.id}")
    assert response is not None
    assert response.status == 404
    page.goto(console.url + "identities")
    assert "elsewhere.system" not in page.content()


@pytest.mark.parametrize("csrf", [None, "wrong"])
def test_a_form_post_without_the_sessions_csrf_token_is_403(
    console: Console, context: BrowserContext, page: Page, csrf: str | None
) -> None:
    sign_in(page, console, console.token(f"console-csrf-{csrf}", "admin"))
    form: dict[str, str | float | bool] = {
        "type": "system",
        "cvr": "34051178",
        "display_name": f"forged.{csrf}",
    }
    if csrf is not None:
        form["csrf"] = csrf
    response = context.request.post(console.url + "identities", form=form)
    assert response.status == 403
    page.goto(console.url + "identities")
    assert f"forged.{csrf}" not in page.content()
    # The same form with the page's own token goes through.
    form["csrf"] = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    response = context.request.post(console.url + "identities", form=form)
    assert response.ok


def test_the_sign_in_form_without_its_token_is_403(
    console: Console, context: BrowserContext
) -> None:
    response = context.request.post(
        console.url + "sign-in", form={"token": console.token("console-forged", "admin")}
    )
    assert response.status == 403
    assert session_cookies(context) == []


def test_every_page_passes_axe_without_serious_violations(
    console: Console, page: Page, tmp_path: Path, keys: KeyPool
) -> None:
    problems: dict[str, list[str]] = {}

    def check(name: str) -> None:
        problems[name] = accessibility_problems(page)

    page.goto(console.url + "sign-in")
    check("sign-in")
    sign_in(page, console, console.token("console-axe", "admin"))
    check("overview")
    page.goto(console.url + "tokens")
    check("tokens")
    page.goto(console.url + "audit?verify")
    check("audit")
    page.goto(console.url + "import")
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "axe-1,user,,99999999,,Åse,,ase@example.dk\n", encoding="utf-8")
    page.get_by_label("File").set_input_files(bad)
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-errors")).to_be_visible()
    check("import with errors")
    page.goto(console.url + "identities/new")
    check("new identity")
    page.get_by_label("Type").select_option("system")
    page.get_by_label("CVR").fill("34051178")
    page.get_by_label("Display name").fill("axe.console")
    page.get_by_role("button", name="Create").click()
    check("identity")
    page.get_by_role("button", name="Place an order").click()
    check("one-time code")
    reference = page.locator("#reference").inner_text().strip()
    code = page.locator("#one-time-code").inner_text().strip()
    certificate = enroll_with_curl(console, reference, code, keys.rsa(1).path, tmp_path)
    page.goto(console.url + "identities?q=axe")
    check("identities")
    page.goto(console.url + "certificates?status=good&type=system&expiring=3650")
    check("certificates")
    page.goto(console.url + "organisations")
    check("organisations")
    page.goto(console.url + "organisations/34051178")
    check("organisation")
    page.goto(console.url + "identities?q=axe.console")
    page.get_by_role("link", name="axe.console").click()
    page.get_by_role("link", name="Edit").click()
    check("edit identity")
    page.get_by_label("Email").fill("not-an-address")
    page.locator("form.card").evaluate("form => form.noValidate = true")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#email-error")).to_be_visible()
    check("edit identity with an error")
    serial = format(certificate.serial_number, "040x")
    page.goto(f"{console.url}certificates/{serial}")
    check("certificate")
    page.get_by_role("link", name="Revoke").click()
    check("revoke")
    page.goto(console.url + "identities/00000000-0000-0000-0000-000000000000")
    check("error")
    assert {name: found for name, found in problems.items() if found} == {}


def test_a_token_made_in_the_console_is_shown_once_and_revoking_it_ends_its_sessions(
    console: Console, browser: Any, page: Page
) -> None:
    sign_in(page, console, console.token("console-tokens", "admin"))
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("idm-console")
    page.get_by_label("read").check()
    page.get_by_label("order").check()
    page.get_by_label("CVR").fill("99999999")
    page.get_by_role("button", name="Create").click()
    secret = page.locator("#token-secret").inner_text().strip()
    assert secret.startswith("estca_")
    page.reload()
    expect(page.locator("#secret-gone")).to_be_visible()
    assert secret not in page.content()

    other = browser.new_context(ignore_https_errors=True, locale="en-GB")
    try:
        confined = other.new_page()
        sign_in(confined, console, secret)
        expect(confined.locator(".who")).to_contain_text("organisation 99999999")
        response = confined.goto(console.url + "tokens")
        assert response is not None
        assert response.status == 403

        page.goto(console.url + "tokens/idm-console/revoke")
        page.get_by_role("button", name="Yes, revoke it").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("API tokens")
        confined.goto(console.url)
        expect(confined).to_have_url(re.compile(r"/console/sign-in$"))
    finally:
        other.close()


def test_the_identity_search_finds_by_name_and_a_bad_identity_keeps_the_form(
    console: Console, page: Page
) -> None:
    sign_in(page, console, console.token("console-search", "admin"))
    for name in ("search.alpha", "search.beta"):
        page.goto(console.url + "identities/new")
        page.get_by_label("Type").select_option("system")
        page.get_by_label("CVR").fill("34051178")
        page.get_by_label("Display name").fill(name)
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(name)
    page.goto(console.url + "identities")
    page.get_by_label("Name or email contains").fill("ALPHA")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="search.alpha")).to_be_visible()
    expect(page.get_by_role("link", name="search.beta")).to_have_count(0)

    page.goto(console.url + "identities/new")
    page.get_by_label("Type").select_option("user")
    page.get_by_label("CVR").fill("34051178")
    page.get_by_label("Given name").fill("Only")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("alert")).to_contain_text("surname")
    expect(page.get_by_label("Given name")).to_have_value("Only")


def test_pages_fit_a_phone_screen_without_sideways_scrolling(
    console: Console, browser: Any
) -> None:
    phone = browser.new_context(
        ignore_https_errors=True, locale="en-GB", viewport={"width": 360, "height": 740}
    )
    try:
        page = phone.new_page()
        sign_in(page, console, console.token("console-phone", "admin"))
        edit = _identity_url(console, "phone.console") + "/edit"
        for path in (
            "",
            "identities",
            "identities/new",
            edit,
            "certificates",
            "organisations",
            "organisations/34051178",
            "audit",
            "tokens",
            "import",
        ):
            page.goto(console.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, f"/console/{path} is {width} px wide on a 360 px screen"
    finally:
        phone.close()


def _identity_url(console: Console, name: str) -> str:
    """A new system identity's page, below the console's URL."""
    made = console.call(
        console.service.registry.create_identity(
            ADMIN,
            type=IdentityType.SYSTEM,
            organisation_name=None,
            cvr="34051178",
            display_name=name,
        )
    )
    return f"identities/{made.id}"


def test_an_identity_is_edited_with_a_bad_email_shown_by_its_field(
    console: Console, page: Page, screenshots: Path
) -> None:
    url = console.url + _identity_url(console, "edit.console")
    sign_in(page, console, console.token("console-edit", "read,order"))
    page.goto(url)
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Edit identity")
    page.get_by_label("Display name").fill("edited.console")
    page.get_by_label("Email").fill("not-an-address")
    # The browser's own check would stop it; the server's is what counts.
    page.locator("form.card").evaluate("form => form.noValidate = true")
    page.get_by_role("button", name="Save").click()
    email = page.get_by_label("Email")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#email-error")).to_contain_text("email must be an address")
    expect(page.get_by_label("Display name")).to_have_value("edited.console")
    page.screenshot(path=screenshots / "console-identity-edit.png", full_page=True)
    email.fill("ops@example.dk")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("edited.console")
    expect(page.locator("#identity-email")).to_have_text("ops@example.dk")


def test_the_organisations_page_lists_them_and_counts_an_organisations_identities(
    console: Console, page: Page, screenshots: Path
) -> None:
    sign_in(page, console, console.token("console-organisations", "admin"))
    page.get_by_role("navigation").get_by_role("link", name="Organisations").click()
    expect(page.get_by_role("link", name="Digitaliseringsstyrelsen")).to_be_visible()
    page.screenshot(path=screenshots / "console-organisations.png", full_page=True)
    page.get_by_role("link", name="Digitaliseringsstyrelsen").click()
    expect(page.locator("#identity-count")).to_have_text(re.compile(r"^[0-9]+$"))
    page.get_by_role("link", name="Its identities").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Identities · 34051178")


def test_the_audit_trail_shows_the_newest_events_and_verifies_the_chain(
    console: Console, page: Page, browser: Any
) -> None:
    sign_in(page, console, console.token("console-audit", "admin"))
    page.get_by_role("navigation").get_by_role("link", name="Audit trail").click()
    expect(page.get_by_role("cell", name="token:console-audit").first).to_be_visible()
    page.get_by_label("Action").fill("token.created")
    page.get_by_role("button", name="Filter").click()
    actions = page.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert actions
    assert set(actions) == {"token.created"}
    page.get_by_role("link", name="Verify the chain").click()
    expect(page.locator("#chain-status")).to_contain_text("The chain holds")


def test_the_audit_trail_is_not_an_organisations_to_read(console: Console, page: Page) -> None:
    sign_in(page, console, console.token("console-audit-confined", "read", cvr="99999999"))
    expect(page.get_by_role("link", name="Audit trail")).to_have_count(0)
    response = page.goto(console.url + "audit")
    assert response is not None
    assert response.status == 403
    refused = console.call(console.service.audit.events(action="admin.refused", newest_first=True))
    assert str(refused[0].actor) == "token:console-audit-confined"


HEADER = "external_id,type,organisation_name,cvr,display_name,given_name,surname,email\n"


def test_an_import_with_a_bad_row_shows_every_error_and_imports_nothing(
    console: Console, page: Page, tmp_path: Path
) -> None:
    sign_in(page, console, console.token("console-import-bad", "read,order"))
    bad = tmp_path / "staff.csv"
    bad.write_text(
        HEADER
        + "bad-1,user,,99999999,,Søren,Ærø Ålborg,soren@example.dk\n"
        + "bad-2,user,,99999999,,Åse,,ase@example.dk\n",
        encoding="utf-8",
    )
    page.get_by_role("navigation").get_by_role("link", name="Import").click()
    page.get_by_label("File").set_input_files(bad)
    page.get_by_role("button", name="Import").click()
    errors = page.locator("#import-errors")
    expect(errors).to_contain_text("nothing was imported")
    expect(errors.get_by_role("cell", name="3", exact=True)).to_be_visible()
    page.goto(console.url + "identities?q=Søren")
    expect(page.get_by_text("Søren Ærø Ålborg")).to_have_count(0)


def test_a_good_import_shows_its_progress_imports_every_row_and_its_codes_once(
    console: Console, context: BrowserContext, page: Page, tmp_path: Path, screenshots: Path
) -> None:
    sign_in(page, console, console.token("console-import", "read,order"))
    rows = 300
    good = tmp_path / "staff.csv"
    good.write_text(
        HEADER
        + "".join(f"imp-{n},system,,99999999,import-{n:04d}.system,,,\n" for n in range(rows)),
        encoding="utf-8",
    )
    page.goto(console.url + "import")
    page.get_by_label("File").set_input_files(good)
    page.get_by_label("Place an order for each new identity").check()
    # A slow uplink, so the progress bar is seen moving (Chromium's network emulation).
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 12_000},
    )
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-progress")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-uploaded", re.compile(r"^[1-9]"))
    page.screenshot(path=screenshots / "console-import-progress.png", full_page=True)
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    expect(page.locator("#import-done")).to_contain_text(f"{rows} new", timeout=30_000)
    assert page.evaluate("document.body.dataset.uploaded") == "100"
    codes = page.locator("#import-codes tbody tr")
    expect(codes).to_have_count(rows)
    first_code = codes.first.locator("td").nth(1).inner_text().strip()
    page.screenshot(path=screenshots / "console-import-result.png")
    page.reload()
    expect(page.locator("#import-gone")).to_be_visible()
    assert first_code not in page.content()
    page.goto(console.url + "identities?q=import-0299")
    expect(page.get_by_role("link", name="import-0299.system")).to_be_visible()


def test_an_order_is_cancelled_and_an_identity_disabled_after_confirmation(
    console: Console, page: Page
) -> None:
    sign_in(page, console, console.token("console-disable", "admin"))
    page.goto(console.url + "identities/new")
    page.get_by_label("Type").select_option("system")
    page.get_by_label("CVR").fill("34051178")
    page.get_by_label("Display name").fill("disable.console")
    page.get_by_role("button", name="Create").click()
    identity_url = page.url
    page.get_by_role("button", name="Place an order").click()
    assert accessibility_problems(page) == []
    page.get_by_role("button", name="Cancel the order").click()
    expect(page.locator("#order-state")).to_have_text("cancelled")

    page.goto(identity_url)
    page.get_by_role("link", name="Disable").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Disable this identity?")
    assert accessibility_problems(page) == []
    page.get_by_role("button", name="Yes, disable it").click()
    expect(page.locator("#identity-status")).to_have_text("disabled")
