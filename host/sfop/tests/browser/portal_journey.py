#!/usr/bin/env python3
"""A developer's first visit to the sfop portal, in headless Chromium driven
over WebDriver (selenium + Debian's chromedriver): open the catalogue, follow
an API, sign up, register an app, get a user token through the consent page,
call the balance API with "try it" and see the answer. Saves a full-page
screenshot of each step.

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

    def step(what):
        print(f"step: {what}", flush=True)

    def expect(condition, message):
        if not condition:
            raise AssertionError(f"{message}\n--- page {driver.current_url} ---\n{driver.page_source[:4000]}")

    try:
        step("open the catalogue")
        driver.get(f"{base}/portal")
        expect("APIs" in driver.title, "catalogue title")
        rows = driver.find_elements(By.CSS_SELECTOR, "tbody tr")
        expect(len(rows) >= 10, f"catalogue lists {len(rows)} APIs")
        shot("01-catalogue.png")

        step("follow an API")
        driver.find_element(By.LINK_TEXT, "account-balance").click()
        wait.until(ec.url_contains("/portal/apis/account-balance"))
        h1 = driver.find_element(By.TAG_NAME, "h1").text
        expect("account-balance" in h1, f"API page heading {h1!r}")
        expect("balance_amt" in driver.page_source, "response fields documented")
        shot("02-api-page.png")

        step("sign up")
        driver.find_element(By.LINK_TEXT, "Sign up").click()
        wait.until(ec.presence_of_element_located((By.ID, "email")))
        email = f"dev{int(time.time() * 1000)}@example.com"
        driver.find_element(By.ID, "email").send_keys(email)
        driver.find_element(By.ID, "password").send_keys("a long password 123")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(ec.url_contains("/portal/apps"))
        expect(email in driver.page_source, "signed in as the new developer")
        shot("03-my-apps.png")

        step("register an app")
        driver.find_element(By.ID, "name").send_keys("Pay app 페이앱")
        driver.find_element(By.ID, "redirect_uris").send_keys(app_callback)
        driver.find_element(By.ID, "scope-login").click()
        driver.find_element(By.ID, "scope-inquiry").click()
        shot("04-register-form.png")
        driver.find_element(By.ID, "register").click()
        wait.until(ec.presence_of_element_located((By.ID, "client-secret")))
        secret = driver.find_element(By.ID, "client-secret").text.strip()
        client_id = driver.find_element(By.ID, "client-id").text.strip()
        expect(re.fullmatch(r"[0-9a-f]{64}", secret), f"client secret {secret!r}")
        shot("05-app-registered.png")

        step("get a user token through the consent page")
        driver.find_element(By.ID, "continue").click()
        wait.until(ec.presence_of_element_located((By.ID, "get-user-token")))
        shot("06-app.png")
        driver.find_element(By.ID, "get-user-token").click()
        wait.until(ec.presence_of_element_located((By.ID, "login_id")))
        expect("Pay app 페이앱" in driver.page_source, "the sign-in page names the app")
        driver.find_element(By.ID, "login_id").send_keys("hong")
        driver.find_element(By.ID, "password").send_keys("hong1234")
        driver.find_element(By.CSS_SELECTOR, "button.primary").click()
        wait.until(ec.presence_of_element_located((By.ID, "account-0")))
        driver.find_element(By.ID, "account-0").click()
        shot("07-consent.png")
        driver.find_element(By.CSS_SELECTOR, "button[value=consent]").click()
        wait.until(ec.url_contains("/portal/callback"))
        wait.until(ec.presence_of_element_located((By.ID, "client_secret")))
        driver.find_element(By.ID, "client_secret").send_keys(secret)
        shot("08-exchange.png")
        driver.find_element(By.ID, "exchange").click()
        wait.until(ec.presence_of_element_located((By.ID, "token-accounts")))
        accounts = driver.find_element(By.ID, "token-accounts").text
        expect(re.search(r"\d{24}", accounts), f"token accounts {accounts!r}")
        expect(client_id in driver.page_source, "back on the app's page")
        shot("09-token.png")

        step("try it: call balance")
        driver.find_element(By.LINK_TEXT, "APIs").click()
        wait.until(ec.presence_of_element_located((By.LINK_TEXT, "account-balance")))
        driver.find_element(By.LINK_TEXT, "account-balance").click()
        wait.until(ec.presence_of_element_located((By.ID, "try-send")))
        fin = driver.find_element(By.ID, "f-fintech_use_num").get_attribute("value")
        expect(fin and fin in accounts, f"try-it prefilled fintech_use_num {fin!r}")
        driver.find_element(By.ID, "try-send").click()
        wait.until(ec.presence_of_element_located((By.ID, "try-result")))
        result = driver.find_element(By.ID, "try-result").text
        response = driver.find_element(By.ID, "try-response").text
        expect("HTTP 200" in result, f"try-it status {result!r}")
        expect('"rsp_code": "A0000"' in response, f"try-it answer {response!r}")
        expect('"balance_amt"' in response, f"balance in the answer {response!r}")
        driver.execute_script("document.getElementById('try').scrollIntoView()")
        shot("10-try-it-result.png")

        step("read the permissions and the change notices")
        driver.find_element(By.LINK_TEXT, "Permissions").click()
        wait.until(ec.title_contains("Permissions"))
        expect("check if operation" in driver.page_source, "the attenuation example")
        shot("11-permissions.png")
        driver.find_element(By.LINK_TEXT, "Changes").click()
        wait.until(ec.title_contains("Change notices"))
        expect("First version." in driver.page_source, "a notice per first version")
        shot("12-changes.png")

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
