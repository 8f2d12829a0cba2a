#!/usr/bin/env python3
"""Drives the Skyhook web console in a real headless Chromium, the way a person
would, and takes a screenshot at every step.

Usage: console-test.py --base http://127.0.0.1:PORT --key API_KEY --receiver URL [--out docs/screenshots]

Run by local/tests/console_browser.rs against a fresh `skyhook serve` whose
API key, event type and receiver it created; the receiver fails its first
request and accepts the rest. Steps: sign in, create an endpoint, send a test
event (fails: maxAttempts 1), publish events through the API (succeed), find
the deliveries in the log, filter it, open the failed delivery's attempts,
retry it, check the event log, open the endpoint's chart, make a portal link
and open it. Exits non-zero with a message on the first thing that is wrong.
"""

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

CHROMIUM = os.environ.get("SKYHOOK_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SKYHOOK_CHROMEDRIVER", "/usr/bin/chromedriver")


def log(message):
    print(f"[console-test] {message}", flush=True)


class Console:
    def __init__(self, base, out):
        self.base = base.rstrip("/")
        self.out = out
        self.profile = tempfile.mkdtemp(prefix="skyhook-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--force-device-scale-factor=1",
            "--lang=en-US",
            f"--user-data-dir={self.profile}",
        ]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)
        # A fixed time zone keeps the screenshots' times readable and stable.
        self.driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "UTC"})
        self.wait = WebDriverWait(self.driver, 20)
        self.step = 0

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # ---------------------------------------------------------------- helpers

    def open(self, path):
        self.driver.get(self.base + path)

    def find(self, css):
        return self.wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def find_all(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def click(self, css):
        element = self.wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, css)))
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()
        return element

    def text_of(self, css):
        return self.find(css).text

    def wait_text(self, css, text, timeout=20):
        try:
            WebDriverWait(self.driver, timeout).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
        except TimeoutException:
            found = [e.text for e in self.find_all(css)]
            raise AssertionError(f"expected {text!r} in {css}, found {found!r}")

    def heading(self):
        return self.find("main h1").text

    def wait_heading(self, text):
        self.wait_text("main h1", text)

    def confirm(self):
        self.click("dialog [data-action=confirm]")
        self.wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, "dialog")))

    def shot(self, name):
        """A full-page PNG into the screenshots folder."""
        self.step += 1
        self.driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.25)  # let focus rings and the toast settle
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        width = 1280
        height = max(900, min(int(size["height"]), 4000))
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        path = os.path.join(self.out, f"{self.step:02d}-{name}.png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        log(f"screenshot {path}")

    def check_console_log(self):
        """No script errors or CSP violations (failed API calls are expected)."""
        problems = []
        for entry in self.driver.get_log("browser"):
            message = entry.get("message", "")
            if entry.get("level") != "SEVERE":
                continue
            if "Failed to load resource" in message:
                continue
            problems.append(message)
        if problems:
            raise AssertionError("browser console errors:\n  " + "\n  ".join(problems))


def api(base, key, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)
    request.add_header("authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
        return json.loads(text) if text else None


def until(what, predicate, timeout=30, every=0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def run(args):
    c = Console(args.base, args.out)
    try:
        drive(c, args)
    except Exception:
        try:
            c.shot("failure")
        except Exception:
            pass
        raise
    finally:
        c.close()


def drive(c, args):
    # 1. Sign in: a wrong key is refused with a message, the real one works.
    c.open("/")
    c.wait_heading("Sign in to Skyhook")
    assert c.driver.switch_to.active_element.get_attribute("id") == "api-key", "the key field has focus"
    c.shot("sign-in")
    c.find("#api-key").send_keys("sk_not_a_real_key")
    c.click("form.signin button[type=submit]")
    c.wait_text("form.signin .alert-error", "not accepted")
    c.shot("sign-in-refused")
    field = c.find("#api-key")
    field.clear()
    field.send_keys(args.key)
    c.click("form.signin button[type=submit]")
    c.wait_heading("Endpoints")
    c.wait_text("main .empty", "No endpoints yet")
    assert args.key not in c.driver.current_url, "the key stays out of the URL"
    c.shot("endpoints-empty")

    # 2. Create an endpoint to the local receiver (one attempt only, so the first failure is final).
    c.click("a[href='#/endpoints/new']")
    c.wait_heading("New endpoint")
    c.find("#ep-url").send_keys(args.receiver)
    c.find("#ep-description").send_keys("Local receiver (fails its first request)")
    c.click("label[for=ep-type-0]")
    max_attempts = c.find("#ep-max")
    max_attempts.clear()
    max_attempts.send_keys("1")
    c.shot("endpoint-form")
    c.click("main form button[type=submit]")
    c.find("#endpoint-secret")
    secret = c.text_of("#endpoint-secret")
    assert secret.startswith("whsec_"), f"the new secret is shown once: {secret!r}"
    c.wait_heading(args.receiver)
    endpoint_id = c.driver.current_url.rsplit("/", 1)[-1]
    assert endpoint_id.startswith("ep_"), c.driver.current_url
    c.shot("endpoint-created")
    # Shown once: reloading the page does not show it again.
    c.driver.refresh()
    c.wait_heading(args.receiver)
    assert not c.find_all("#endpoint-secret"), "the secret is not shown twice"

    # 3. Send a test event from the console: the receiver fails it, and with one attempt it is final.
    c.click("[data-action=send-test]")
    c.wait_text("#toast", "Test event evt_")
    until("the test delivery to fail", lambda: api(args.base, args.key, "GET",
          f"/v1/deliveries?endpointId={endpoint_id}&status=failed")["data"])
    # 4. Publish events through the API: these succeed.
    for n in range(3):
        api(args.base, args.key, "POST", "/v1/events",
            {"eventType": "order.created", "payload": {"orderId": f"ord_{1000 + n}", "amount": 4200 + n}})
    until("three succeeded deliveries", lambda: len(api(args.base, args.key, "GET",
          f"/v1/deliveries?endpointId={endpoint_id}&status=succeeded")["data"]) >= 3)

    # 5. The delivery log shows all four; the status filter narrows it.
    c.open("/#/deliveries")
    c.wait_heading("Deliveries")
    until("four rows in the delivery log", lambda: len(c.find_all("tr[data-delivery]")) == 4)
    c.wait_text("main table", "webhook.test")
    c.wait_text("main table", args.receiver)
    c.shot("delivery-log")
    Select(c.find("#f-status")).select_by_value("failed")
    Select(c.find("#f-endpoint")).select_by_value(endpoint_id)
    c.click("form.filters button[type=submit]")
    until("only the failed delivery", lambda: [r.get_attribute("data-status") for r in c.find_all("tr[data-delivery]")] == ["failed"])
    assert "status=failed" in c.driver.current_url, "filters live in the URL"
    c.shot("delivery-log-filtered")

    # 6. Open the failed delivery and its attempt: status 500, the response body, the timing.
    c.click("tr[data-delivery] a.row-link")
    c.wait_heading("webhook.test")
    c.find("#attempts details.attempt[data-attempt='1']")
    attempt = c.find("details.attempt[data-attempt='1']")
    if attempt.get_attribute("open") is None:
        c.click("details.attempt[data-attempt='1'] > summary")
    c.wait_text("details.attempt[data-attempt='1']", "500")
    c.wait_text("details.attempt[data-attempt='1'] .attempt-response", '"ok": true')
    c.wait_text("details.attempt[data-attempt='1']", "Duration")
    failed_id = c.driver.current_url.rsplit("/", 1)[-1]
    c.shot("delivery-attempts")

    # 7. Retry it: a new delivery (retryOf the failed one) that the receiver now accepts.
    c.click("[data-action=retry]")
    until("the retry's page", lambda: c.driver.current_url.rsplit("/", 1)[-1] != failed_id)
    c.wait_text("main .alert-ok", "Retry started")
    c.wait_text("main dl.props", failed_id)

    def succeeded():
        c.click("[data-action=refresh]")
        try:
            WebDriverWait(c.driver, 2).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "main .page-head .sub"), "succeeded"))
            return True
        except TimeoutException:
            return False

    until("the retry to succeed", succeeded, timeout=30, every=0.5)
    c.wait_text("details.attempt[data-attempt='1']", "200")
    c.shot("delivery-retried")
    c.driver.back()
    c.wait_heading("webhook.test")
    c.wait_text("main dl.props", "Retried as")

    # 8. The event log: the test event and the three published ones.
    c.click("nav a[data-nav=events]")
    c.wait_heading("Events")
    until("four events", lambda: len(c.find_all("tr[data-event]")) == 4)
    c.wait_text("main table", "order.created")
    c.shot("event-log")
    # Cursor paging: two pages of two, forward and back.
    c.open("/#/events?limit=2")
    until("a first page of two", lambda: len(c.find_all("tr[data-event]")) == 2)
    first_page = [r.get_attribute("data-event") for r in c.find_all("tr[data-event]")]
    c.click("[data-action=next-page]")
    until("a second page", lambda: c.find_all("tr[data-event]") and
          [r.get_attribute("data-event") for r in c.find_all("tr[data-event]")] != first_page)
    second_page = [r.get_attribute("data-event") for r in c.find_all("tr[data-event]")]
    assert len(second_page) == 2 and not set(first_page) & set(second_page), (first_page, second_page)
    c.wait_text(".pager", "Page 2")
    c.click(".pager button:not([data-action])")
    until("the first page again", lambda: [r.get_attribute("data-event") for r in c.find_all("tr[data-event]")] == first_page)
    c.click("tr[data-event] a.row-link")
    c.wait_text("main pre.code", "orderId")
    c.shot("event-detail")

    # 9. The endpoint's chart: success rate and latency from the hourly stats.
    c.open(f"/#/endpoints/{endpoint_id}")
    c.wait_heading(args.receiver)
    c.find("#stats svg.chart")
    c.wait_text("#stat-deliveries", "5")
    rate = c.text_of("#stat-rate .value")
    assert rate == "80.0 %", f"4 of 5 attempts succeeded: {rate!r}"
    bars = c.find_all("#stats svg.chart rect.bar-ok") + c.find_all("#stats svg.chart rect.bar-bad")
    assert bars, "the chart has bars"
    c.shot("endpoint-chart")

    # 10. A portal link for this endpoint, opened as the customer would.
    c.click("[data-action=portal-link]")
    link = c.find("#open-portal").get_attribute("href")
    assert "/?portal=eyJ" in link, link
    c.shot("portal-link")
    c.driver.get(link)
    c.wait_heading("Your endpoints")
    assert "eyJ" not in c.driver.current_url, "the token leaves the address bar"
    assert "?portal=" in c.driver.current_url, "a reload is still the (frameable) portal"
    assert c.text_of("#mode-label") == "Webhook portal"
    assert not c.driver.find_element(By.CSS_SELECTOR, "nav [data-console-only]").is_displayed(), "the portal has no event log"
    rows = until("the portal's endpoint", lambda: c.find_all("main tbody tr"))
    assert len(rows) == 1 and args.receiver in rows[0].text, [r.text for r in rows]
    assert not c.find_all("a[href='#/endpoints/new']"), "no endpoint creation in the portal"
    c.shot("portal-endpoints")
    c.click("main tbody tr a.row-link")
    c.wait_heading(args.receiver)
    c.find("#stats svg.chart")
    assert not c.find_all("[data-action=rotate-secret]") and not c.find_all("[data-action=delete]"), "limited actions"
    until("the endpoint's deliveries in the portal", lambda: len(c.find_all("tr[data-delivery]")) >= 5)
    c.shot("portal-endpoint")

    # 11. The customer edits the description (url, description and isActive are all a portal may change).
    c.click("a[href$='/edit']")
    c.wait_heading("Edit endpoint")
    assert not c.find_all("#ep-max") and not c.find_all("#ep-format"), "the portal edits url, description and isActive only"
    description = c.find("#ep-description")
    description.clear()
    description.send_keys("Customer's production receiver")
    c.shot("portal-edit")
    c.click("main form button[type=submit]")
    c.wait_text("main .alert-ok", "Endpoint saved")
    c.wait_text("main .page-head .sub", "Customer's production receiver")

    # 12. The same page for someone whose system prefers a dark theme.
    c.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    c.find("#stats svg.chart")
    c.shot("portal-dark")
    c.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

    # 13. Leaving the portal forgets the token; the page then only says how to come back.
    c.click("#sign-out")
    c.wait_text("main", "You have left the portal")
    c.driver.refresh()
    c.wait_heading("Webhook portal")
    assert not c.find_all("#api-key"), "no console sign-in inside the portal"
    c.shot("portal-left")
    # The console itself (no ?portal) is still signed in with the key, in console mode.
    c.open("/#/endpoints")
    c.wait_heading("Endpoints")
    assert c.find("nav [data-console-only]").is_displayed(), "console mode again"
    c.check_console_log()
    log("all steps passed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--receiver", required=True)
    parser.add_argument("--out", default="docs/screenshots")
    args = parser.parse_args()
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            sys.exit(f"console-test: {path} is missing: apt-get install -y chromium chromium-driver")
    os.makedirs(args.out, exist_ok=True)
    os.environ.setdefault("SE_OFFLINE", "true")
    run(args)


if __name__ == "__main__":
    main()
