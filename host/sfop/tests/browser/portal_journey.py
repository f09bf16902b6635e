#!/usr/bin/env python3
"""A developer's first visit to the sfop portal, in headless Chromium driven
over WebDriver (selenium + Debian's chromedriver): open the catalogue, search
for a field, follow it to its API, copy the curl example, pick a version, read
the Redoc reference, sign up (and come back to the page that asked), register
an app, get a user token through the consent page (its accounts with bank and
alias), call the balance API with "try it" twice (a fresh bank_tran_id each
time), read the status page, rotate the client secret, sign out and back in
to the app's page. Every page visited is checked for horizontal overflow at
390 and 1280 px, and for content-security-policy violations. Saves a
full-page screenshot of each step.

Run by host/sfop/tests/all/portal.rs against a platform it started:
    python3 portal_journey.py --url https://127.0.0.1:PORT --screenshots DIR
Exits non-zero, saying which step failed, when anything is not as expected.
"""

import argparse
import base64
import hashlib
import http.server
import os
import re
import sys
import threading
import time
import urllib.parse

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


class AppCallback(http.server.BaseHTTPRequestHandler):
    """The app's own redirect URI, on another origin than the platform: it
    records the query the browser brings back."""

    received = []

    def do_GET(self):  # noqa: N802 - the http.server API
        AppCallback.received.append(self.path)
        body = b"<!doctype html><title>app</title><p>callback received</p>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--screenshots", required=True)
    args = parser.parse_args()
    os.makedirs(args.screenshots, exist_ok=True)

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        # The platform's self-signed test certificate.
        "--ignore-certificate-errors",
        "--window-size=1280,900",
        "--lang=en-US",
    ]:
        options.add_argument(flag)
    # The browser's console, to find content-security-policy violations.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    wait = WebDriverWait(driver, 30)
    base = args.url.rstrip("/")
    app = http.server.HTTPServer(("127.0.0.1", 0), AppCallback)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    app_callback = f"http://127.0.0.1:{app.server_address[1]}/callback"

    def shot(name):
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
        )
        path = os.path.join(args.screenshots, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data["data"]))
        print(f"screenshot {path}")

    def follow(link_text):
        """Clicks a link and waits until the page it was on is gone."""
        old = driver.find_element(By.TAG_NAME, "html")
        driver.find_element(By.LINK_TEXT, link_text).click()
        wait.until(ec.staleness_of(old))

    def step(what):
        print(f"step: {what}", flush=True)

    def expect(condition, message):
        if not condition:
            raise AssertionError(f"{message}\n--- page {driver.current_url} ---\n{driver.page_source[:4000]}")

    checked_widths = []

    def fits(what):
        """No horizontal overflow at 390 and at 1280 px wide."""
        for width in (390, 1280):
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            )
            sizes = driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth];"
            )
            if sizes[0] > sizes[1]:
                wide = driver.execute_script(
                    "const w = window.innerWidth; return Array.from(document.querySelectorAll('body *'))"
                    ".filter(e => e.getBoundingClientRect().right > w + 1).slice(0, 8)"
                    ".map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));"
                )
                shot(f"overflow-{what}-{width}.png")
                raise AssertionError(
                    f"{what} at {width} px: scrollWidth {sizes[0]} > innerWidth {sizes[1]}; too wide: {wide}"
                )
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        checked_widths.append(what)

    def no_csp_violations(what):
        try:
            logs = driver.get_log("browser")
        except Exception:  # noqa: BLE001 - a driver without the log
            return
        bad = [entry["message"] for entry in logs if "Content Security Policy" in entry["message"]]
        expect(not bad, f"{what}: content-security-policy violations: {bad}")

    try:
        step("open the catalogue")
        driver.get(f"{base}/portal")
        # The first page of a cold browser on a loaded machine: `get` may
        # return before the document's title is parsed, so wait for it.
        try:
            wait.until(ec.title_contains("APIs"))
        except TimeoutException:
            expect(False, f"catalogue title: {driver.title!r}")
        rows = driver.find_elements(By.CSS_SELECTOR, "tbody tr")
        expect(len(rows) >= 10, f"catalogue lists {len(rows)} APIs")
        shot("01-catalogue.png")
        fits("catalogue")

        step("search for a field from the top bar and follow it")
        box = driver.find_element(By.ID, "nav-search")
        box.send_keys("balance_amt")
        box.submit()
        wait.until(ec.presence_of_element_located((By.ID, "search-results")))
        hits = driver.find_elements(By.CSS_SELECTOR, "a.field-hit")
        hrefs = [h.get_attribute("href") for h in hits]
        expect(any(h.endswith("/portal/apis/account-balance#res-balance_amt") for h in hrefs), f"field hits {hrefs}")
        shot("01b-search.png")
        fits("search")
        driver.find_element(By.CSS_SELECTOR, "a.field-hit[href$='account-balance#res-balance_amt']").click()
        wait.until(ec.url_contains("/portal/apis/account-balance#res-balance_amt"))
        expect(driver.find_element(By.ID, "res-balance_amt").is_displayed(), "the field's row")

        step("follow an API")
        h1 = driver.find_element(By.TAG_NAME, "h1").text
        expect("account-balance" in h1, f"API page heading {h1!r}")
        expect("balance_amt" in driver.page_source, "response fields documented")
        shot("02-api-page.png")
        fits("api page")

        step("copy the curl example")
        curl = driver.find_element(By.ID, "sample-curl").text
        expect(curl.startswith("curl -X GET '") and "/v2.0/account/balance/fin_num?" in curl, f"curl {curl!r}")
        python = driver.find_element(By.ID, "sample-python").text
        js = driver.find_element(By.ID, "sample-javascript").text
        url = curl.split("'")[1]
        expect(url in python and url in js, "python and javascript send the same example")
        origin = base
        try:
            driver.execute_cdp_cmd(
                "Browser.grantPermissions",
                {"origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
            )
        except Exception as e:  # noqa: BLE001
            print(f"note: clipboard permission not granted: {e}")
        button = driver.find_element(By.ID, "copy-sample-curl")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
        button.click()
        wait.until(lambda d: d.find_element(By.ID, "copy-sample-curl").get_attribute("data-copied"))
        expect(button.get_attribute("data-copied") == "yes", f"copy said {button.text!r}")
        expect(button.text == "Copied", f"copy button says {button.text!r}")
        pasted = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "navigator.clipboard.readText().then(done, e => done('unreadable: ' + e));"
        )
        expect(pasted.strip() == curl.strip(), f"clipboard holds {pasted!r}, not the curl example")
        shot("02b-copied.png")
        no_csp_violations("api page")

        step("the version selector shows a version's page")
        select = driver.find_element(By.ID, "version-select")
        versions = [o.get_attribute("value") for o in select.find_elements(By.TAG_NAME, "option")]
        expect(versions, "versions listed")
        driver.find_element(By.ID, "version-show").click()
        wait.until(ec.url_contains(f"version={versions[-1]}") if len(versions) == 1 else ec.url_contains("version="))
        expect(driver.find_element(By.ID, "version-select").get_attribute("value") in versions, "a version chosen")

        step("the interactive OpenAPI reference (Redoc, served by the portal)")
        driver.find_element(By.LINK_TEXT, "Reference").click()
        wait.until(ec.title_contains("API reference"))
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script(
                "return !!document.querySelector('redoc .api-content') && document.body.innerText.includes('/v2.0/account/balance/fin_num');"
            ),
            "Redoc did not render the operations",
        )
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name);"
        )
        foreign = [r for r in resources if not (r.startswith(base) or r.startswith("blob:") or r.startswith("data:"))]
        expect(not foreign, f"the reference fetched from elsewhere: {foreign}")
        shot("02c-reference.png")
        no_csp_violations("reference page")
        fits("reference")

        step("sign up, and come back to the page that asked")
        driver.get(f"{base}/portal/apis/account-balance")
        wait.until(ec.presence_of_element_located((By.ID, "sample-curl")))
        driver.find_element(By.LINK_TEXT, "Sign up").click()
        wait.until(ec.presence_of_element_located((By.ID, "email")))
        fits("sign-up")
        email = f"dev{int(time.time() * 1000)}@example.com"
        driver.find_element(By.ID, "email").send_keys(email)
        driver.find_element(By.ID, "password").send_keys("a long password 123")
        driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
        wait.until(ec.url_contains("/portal/apis/account-balance"))
        expect(email in driver.page_source, "signed in as the new developer, back on the API page")
        driver.find_element(By.LINK_TEXT, "My apps").click()
        wait.until(ec.presence_of_element_located((By.ID, "register")))
        shot("03-my-apps.png")
        fits("my apps")

        step("register an app")
        driver.find_element(By.ID, "name").send_keys("Pay app 페이앱")
        driver.find_element(By.ID, "redirect_uris").send_keys(app_callback)
        driver.find_element(By.ID, "scope-login").click()
        driver.find_element(By.ID, "scope-inquiry").click()
        shot("04-register-form.png")
        driver.find_element(By.ID, "register").click()
        wait.until(ec.presence_of_element_located((By.ID, "client-secret")))
        fits("app registered")
        secret = driver.find_element(By.ID, "client-secret").text.strip()
        client_id = driver.find_element(By.ID, "client-id").text.strip()
        expect(re.fullmatch(r"[0-9a-f]{64}", secret), f"client secret {secret!r}")
        shot("05-app-registered.png")

        step("get a user token through the consent page")
        driver.find_element(By.ID, "continue").click()
        wait.until(ec.presence_of_element_located((By.ID, "get-user-token")))
        shot("06-app.png")
        fits("app page")
        driver.find_element(By.ID, "get-user-token").click()
        wait.until(ec.presence_of_element_located((By.ID, "login_id")))
        expect("Pay app 페이앱" in driver.page_source, "the sign-in page names the app")
        driver.find_element(By.ID, "login_id").send_keys("hong")
        driver.find_element(By.ID, "password").send_keys("hong1234")
        driver.find_element(By.CSS_SELECTOR, "button.primary").click()
        wait.until(ec.presence_of_element_located((By.ID, "account-0")))
        driver.find_element(By.ID, "account-0").click()
        shot("07-consent.png")
        fits("consent")
        driver.find_element(By.CSS_SELECTOR, "button[value=consent]").click()
        wait.until(ec.url_contains("/portal/callback"))
        wait.until(ec.presence_of_element_located((By.ID, "client_secret")))
        driver.find_element(By.ID, "client_secret").send_keys(secret)
        shot("08-exchange.png")
        driver.find_element(By.ID, "exchange").click()
        wait.until(ec.presence_of_element_located((By.ID, "token-accounts")))
        accounts = driver.find_element(By.ID, "token-accounts").text
        expect(re.search(r"\d{24}", accounts), f"token accounts {accounts!r}")
        banks = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#token-accounts .account-bank")]
        aliases = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#token-accounts .account-alias")]
        expect(banks and all(banks) and aliases and all(aliases), f"accounts with bank and alias: {accounts!r}")
        expect(client_id in driver.page_source, "back on the app's page")
        shot("09-token.png")
        fits("app with token")

        step("try it: call balance, twice")
        # Each click leaves the page: wait for the old document to go
        # before looking for a link, or the link found may be the old
        # page's (the token page names account-balance too) and gone by the
        # time it is clicked (CI, 2026-12-02).
        follow("APIs")
        wait.until(ec.presence_of_element_located((By.LINK_TEXT, "account-balance")))
        follow("account-balance")
        wait.until(ec.presence_of_element_located((By.ID, "try-send")))
        fin = driver.find_element(By.ID, "f-fintech_use_num").get_attribute("value")
        expect(fin and fin in accounts, f"try-it prefilled fintech_use_num {fin!r}")
        sent_ids = []
        for attempt in (1, 2):
            sent_ids.append(driver.find_element(By.ID, "f-bank_tran_id").get_attribute("value"))
            old = driver.find_element(By.TAG_NAME, "html")
            driver.find_element(By.ID, "try-send").click()
            wait.until(ec.staleness_of(old))
            wait.until(ec.presence_of_element_located((By.ID, "try-result")))
            result = driver.find_element(By.ID, "try-result")
            response = driver.find_element(By.ID, "try-response").text
            expect("HTTP 200" in result.text, f"try-it {attempt} status {result.text!r}")
            expect(result.get_attribute("data-outcome") == "success", f"try-it {attempt}: {result.text!r}")
            expect('"rsp_code": "A0000"' in response, f"try-it {attempt} answer {response!r}")
            expect('"balance_amt"' in response, f"balance in the answer {response!r}")
        expect(
            all(re.fullmatch(r"M\d{9}U\d{9}", i) for i in sent_ids) and sent_ids[0] != sent_ids[1],
            f"each send has its own bank_tran_id: {sent_ids}",
        )
        driver.execute_script("document.getElementById('try').scrollIntoView()")
        shot("10-try-it-result.png")
        fits("try-it result")

        step("read the permissions and the change notices")
        driver.find_element(By.LINK_TEXT, "Permissions").click()
        wait.until(ec.title_contains("Permissions"))
        expect("check if operation" in driver.page_source, "the attenuation example")
        shot("11-permissions.png")
        fits("permissions")
        driver.find_element(By.LINK_TEXT, "Changes").click()
        wait.until(ec.title_contains("Change notices"))
        expect("First version." in driver.page_source, "a notice per first version")
        shot("12-changes.png")
        fits("changes")
        driver.find_element(By.LINK_TEXT, "Keys").click()
        wait.until(ec.title_contains("Keys"))
        fits("keys")

        step("the status page: banks, APIs, incidents")
        driver.find_element(By.LINK_TEXT, "Status").click()
        wait.until(ec.presence_of_element_located((By.ID, "status-banks")))
        bank = driver.find_element(By.CSS_SELECTOR, "#status-banks tr.bank[data-code='097']").text
        expect("available" in bank, f"the virtual bank's row {bank!r}")
        apis = driver.find_element(By.ID, "status-apis").text
        expect("account-balance" in apis and "live" in apis, f"APIs on the status page {apis!r}")
        expect(driver.find_elements(By.ID, "status-incidents"), "the incidents list")
        shot("13-status.png")
        fits("status")

        step("rotate the client secret")
        driver.get(f"{base}/portal/apps/{client_id}")
        wait.until(ec.presence_of_element_located((By.ID, "rotate-secret")))
        driver.find_element(By.ID, "rotate-secret").click()
        wait.until(ec.presence_of_element_located((By.ID, "rotated")))
        new_secret = driver.find_element(By.ID, "client-secret").text.strip()
        expect(re.fullmatch(r"[0-9a-f]{64}", new_secret) and new_secret != secret, f"new secret {new_secret!r}")
        shot("14-secret-rotated.png")
        fits("secret rotated")
        driver.find_element(By.ID, "continue").click()
        wait.until(ec.presence_of_element_located((By.ID, "rotate-secret")))
        expect(new_secret not in driver.page_source, "the new secret is shown once")

        step("sign out, open the app's page, sign in: back on it")
        driver.find_element(By.XPATH, "//header//button[normalize-space()='Sign out']").click()
        wait.until(ec.presence_of_element_located((By.LINK_TEXT, "Sign in")))
        driver.get(f"{base}/portal/apps/{client_id}")
        wait.until(ec.presence_of_element_located((By.ID, "password")))
        expect("next=" in driver.current_url, f"sign-in asked with next: {driver.current_url}")
        fits("sign-in")
        driver.find_element(By.ID, "email").send_keys(email)
        driver.find_element(By.ID, "password").send_keys("a long password 123")
        driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
        wait.until(ec.presence_of_element_located((By.ID, "rotate-secret")))
        expect(driver.current_url.endswith(f"/portal/apps/{client_id}"), f"back at {driver.current_url}")

        step("the consent page hands the code to the app's own redirect URI")
        # PKCE (S256) is required for every client.
        verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()
        ).rstrip(b"=").decode()
        query = urllib.parse.urlencode({
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": app_callback,
            "scope": "login",
            "state": "0123456789abcdef",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        })
        driver.get(f"{base}/oauth/2.0/authorize?{query}")
        wait.until(ec.presence_of_element_located((By.ID, "login_id")))
        driver.find_element(By.ID, "login_id").send_keys("hong")
        driver.find_element(By.ID, "password").send_keys("hong1234")
        driver.find_element(By.CSS_SELECTOR, "button.primary").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "button[value=consent]")))
        driver.find_element(By.CSS_SELECTOR, "button[value=consent]").click()
        wait.until(
            lambda d: AppCallback.received,
            "the app's redirect URI was never reached: did the consent page's form-action block it?",
        )
        got = urllib.parse.parse_qs(urllib.parse.urlparse(AppCallback.received[0]).query)
        expect("code" in got and got.get("state") == ["0123456789abcdef"], f"app callback {AppCallback.received}")
        print(f"widths checked at 390 and 1280 px: {', '.join(checked_widths)}")
        print("journey: ok")
    except Exception as e:  # noqa: BLE001 - report any failure with the page
        print(f"journey failed: {e}", file=sys.stderr)
        try:
            shot("99-failure.png")
        except Exception:  # noqa: BLE001
            pass
        driver.quit()
        sys.exit(1)
    driver.quit()


if __name__ == "__main__":
    main()
