"""An operator in headless Chromium: set a channel up in the admin, watch the dashboard go green, red, amber and
green again while real Celery workers push to a sandbox platform, and fix things from the admin.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (skipped with a reason without them); Selenium uses
/usr/bin/chromedriver and never downloads a driver. Screenshots of each step go to tests/artifacts/screenshots/;
the dashboard one is copied to docs/screenshots/dashboard.png for the README (when missing, or with
UPDATE_DOCS_SCREENSHOTS=1).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests

from channels_app.models import Channel, InboundEvent, InboundStatus, Listing, ListingStatus
from channels_app.ratelimit import limiter_for
from channels_app.reconcile import reconcile_channel
from channels_app.sandbox import start_sandbox
from hub.redis import get_redis
from inventory_app import stock
from inventory_app.models import StockLevel
from tests.e2e.stack import ROOT, Beat, Worker, purge_queues, wait_until
from tests.factories import make_location, make_sku

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = ROOT / "tests" / "artifacts" / "screenshots"
DOCS_SHOT = ROOT / "docs" / "screenshots" / "dashboard.png"
SLUG = "woo-browser"
SECRET = "wc-browser-secret"
CREDENTIALS = {"consumer_key": "ck_browser", "consumer_secret": "cs_browser"}

_missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
try:
    import selenium  # noqa: F401
except ImportError:
    _missing.append("the selenium package")
pytestmark = [
    pytest.mark.skipif(bool(_missing), reason=f"headless browser tests need {', '.join(_missing)} (apt-get install "
                                              "chromium chromium-driver; pip install -r requirements.txt)"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
]

if not _missing:
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait


@pytest.fixture
def browser():
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager fetch a driver or a browser
    profile = tempfile.mkdtemp(prefix="tally-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={profile}", "--window-size=1440,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def celery_stack():
    purge_queues()
    worker = Worker("browser", concurrency=2)
    beat = Beat()
    try:
        yield worker
    finally:
        beat.stop()
        worker.stop()


class Operator:
    """The browser, with the few gestures the admin needs."""

    def __init__(self, driver, base_url: str):
        self.driver, self.base = driver, base_url
        SHOTS.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def wait(self, condition, timeout: float = 30, message: str = ""):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.25,
                             ignored_exceptions=[NoSuchElementException, StaleElementReferenceException]).until(
            condition, message)

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def type(self, element_id: str, text: str) -> None:
        field = self.driver.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(text)

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def save(self, name: str) -> Path:
        """A screenshot of the whole page, not only the viewport (Chromium's DevTools protocol)."""
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000), "scale": 1}})
        path = SHOTS / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def success_message(self) -> str:
        return self.wait(ec.visibility_of_element_located((By.CSS_SELECTOR, ".messagelist .success")),
                         message="a success message").text

    def choose_autocomplete(self, field: str, text: str) -> None:
        """Django's autocomplete widget (select2): open it, search, pick the exact match."""
        self.find(f".field-{field} .select2-selection").click()
        search = self.wait(ec.visibility_of_element_located((By.CSS_SELECTOR, ".select2-container--open "
                                                                               ".select2-search__field")))
        search.send_keys(text)
        # select2 redraws its results as each search's answer comes (on a slow machine, after the option was found):
        # the option is found and clicked afresh when the one found is gone.
        self.fresh(lambda: self.wait(ec.element_to_be_clickable(
            (By.XPATH, f"//li[contains(@class, 'select2-results__option') and normalize-space()='{text}']")),
            message=f"autocomplete option {text}").click())

    def run_action(self, action: str) -> str:
        self.find("#action-toggle").click()
        Select(self.find("select[name=action]")).select_by_value(action)
        self.find("button[name=index]").click()
        return self.success_message()

    # The dashboard swaps its HTML every few seconds: an element found a moment ago can be gone. Every read or
    # click on it finds it afresh and tries again if the swap came in between.
    def fresh(self, gesture, attempts: int = 10):
        for attempt in range(attempts):
            try:
                return gesture()
            except StaleElementReferenceException:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.1)

    def health(self, slug: str) -> str:
        return self.fresh(lambda: self.find(f"#channel-{slug}").get_attribute("data-health"))

    def card(self, slug: str, css: str = "") -> str:
        return self.fresh(lambda: self.find(f"#channel-{slug} {css}".strip()).text)

    def click_in_card(self, slug: str, css: str) -> None:
        self.fresh(lambda: self.find(f"#channel-{slug} {css}").click())

    def count_in_card(self, slug: str, css: str) -> int:
        return self.fresh(lambda: len(self.driver.find_elements(By.CSS_SELECTOR, f"#channel-{slug} {css}")))

    def wait_health(self, slug: str, health: str, timeout: float = 30, **extra) -> None:
        def ready(_):
            if self.health(slug) != health:
                return False
            return all(text in self.card(slug, css) for css, text in extra.items())
        self.wait(ready, timeout, message=f"{slug} to turn {health} {extra or ''}")

    def mark_page(self) -> None:
        self.driver.execute_script("window.__tallyNoReload = true;")

    def page_not_reloaded(self) -> bool:
        return self.driver.execute_script("return window.__tallyNoReload === true;")


def add_listing(op: Operator, sku_code: str, product_id: int) -> None:
    op.open("/admin/channels_app/listing/add/")
    Select(op.find("#id_channel")).select_by_visible_text(SLUG)
    op.choose_autocomplete("sku", sku_code)
    op.type("id_external_product_id", str(product_id))
    op.find("input[name=_save]").click()
    assert "was added successfully" in op.success_message()


def test_operator_sets_up_a_channel_and_follows_its_health_on_the_dashboard(
        browser, live_server, celery_stack, django_user_model):
    django_user_model.objects.create_user(username="operator", password="pw-operator-1", is_staff=True,
                                          is_superuser=True)
    warehouse = make_location("WH-BROWSER")
    tee = make_sku("BR-TEE", stock_at={warehouse: 20})
    mug = make_sku("BR-MUG", stock_at={warehouse: 10})
    sandbox = start_sandbox("woocommerce", hub_url=live_server.url, channel_slug=SLUG, webhook_secret=SECRET,
                            credentials=CREDENTIALS)
    catalog = {row["sku"]: row for row in sandbox.state.set_catalog([{"sku": tee.code, "quantity": 0},
                                                                      {"sku": mug.code, "quantity": 10}])}
    op = Operator(browser, live_server.url)
    try:
        # 1. Log in; the admin index links to the dashboard and to Flower.
        op.open("/admin/login/")
        op.type("id_username", "operator")
        op.type("id_password", "pw-operator-1")
        op.find("input[type=submit]").click()
        op.wait(ec.presence_of_element_located((By.ID, "sync-dashboard-link")), message="the admin index")
        assert op.find("#flower-link").get_attribute("href").endswith("/admin/dashboard/flower/")
        op.save("01-admin-index")

        # 2. Add the channel through the admin form: the sandbox's URL, credentials and webhook secret.
        op.open("/admin/channels_app/channel/add/")
        op.type("id_slug", SLUG)
        op.type("id_name", "WooCommerce (sandbox)")
        Select(op.find("#id_kind")).select_by_value("woocommerce")
        op.type("id_api_base_url", sandbox.url)
        op.type("id_credentials_json", '{"consumer_key": "ck_browser", "consumer_secret": "cs_browser"}')
        op.type("id_new_webhook_secret", SECRET)
        op.save("02-channel-form")
        op.find("input[name=_save]").click()
        assert "was added successfully" in op.success_message()
        channel = Channel.objects.get(slug=SLUG)
        assert channel.credentials == CREDENTIALS and channel.webhook_secret == SECRET
        get_redis().delete(limiter_for(channel).key)  # a bucket left in Redis by an earlier run of this test

        # 3. List a SKU on it through the Listing admin; the beat's sweep and the worker push it.
        add_listing(op, tee.code, catalog[tee.code]["product_id"])
        wait_until(lambda: sandbox.state.quantity(tee.code) == 20, timeout=30, message="the first push")

        # 4. Stock changes through the admin's adjust form reach the channel; the dashboard is green.
        level = StockLevel.objects.get(sku=tee, location=warehouse)
        for delta in (-2, -1):
            op.open(f"/admin/inventory_app/stocklevel/{level.pk}/adjust/")
            op.type("id_delta", str(delta))
            op.type("id_reason", "damaged in the warehouse")
            op.find("input[type=submit]").click()
            assert "Adjusted" in op.success_message()
            wait_until(lambda d=delta: sandbox.state.quantity(tee.code) == 20 + (-2 if d == -2 else -3),
                       timeout=30, message="the adjustment on the channel")
        reconcile_channel(channel)  # what the channel's scheduled reconciliation runs
        op.open("/admin/dashboard/")
        op.wait_health(SLUG, "green", **{".reason": "in sync"})
        op.wait(lambda _: op.card(SLUG, ".last-push") != "never", message="a last push time")
        assert "0.00% variance" in op.card(SLUG, ".reconcile")
        assert op.card(SLUG, ".lag-5m td") != "–"
        assert op.count_in_card(SLUG, "svg polyline") + op.count_in_card(SLUG, "svg circle") > 0
        assert "22 tokens" in op.card(SLUG, ".ratelimit")  # WooCommerce's 25, less the margin
        op.save("03-dashboard-green")

        # 5. The merchant revokes the API key on the platform; a stock change must be pushed and is refused
        #    (401 -> the listing fails at once). The open dashboard turns red by itself, with the reason.
        op.mark_page()
        sandbox.state.credentials["consumer_secret"] = "revoked"
        stock.adjust(sku=tee, location=warehouse, delta=-4, reason="count correction", source="test")
        op.wait_health(SLUG, "red", timeout=30, **{".reason": "1 listing(s) failed", ".failed": "1"})
        assert "401" in op.card(SLUG, ".reason") and "401" in op.card(SLUG, ".last-error")
        assert op.page_not_reloaded(), "the dashboard refreshed itself, not by a page load"
        assert Listing.objects.get(channel=channel, sku=tee).status == ListingStatus.FAILED
        op.save("04-dashboard-red")

        # 6. The key is restored; the operator follows the failed-listings link and replays them.
        sandbox.state.credentials["consumer_secret"] = CREDENTIALS["consumer_secret"]
        op.click_in_card(SLUG, "td.failed a")
        op.wait(ec.presence_of_element_located((By.ID, "result_list")), message="the failed listings")
        assert tee.code in op.text()
        op.save("05-failed-listings")
        assert "1 listing(s) queued for push" in op.run_action("replay")
        wait_until(lambda: sandbox.state.quantity(tee.code) == 13, timeout=30, message="the replayed push")
        op.open("/admin/dashboard/")
        op.wait_health(SLUG, "green", **{".failed": "0"})

        # 7. A sale of a SKU the hub has no listing for: the order webhook is parked (dead-lettered), and the
        #    open dashboard turns amber.
        op.mark_page()
        response = requests.post(f"{sandbox.url}/_sandbox/orders", json={"lines": [{"sku": mug.code, "quantity": 2}]},
                                 timeout=15)
        assert response.status_code == 201, response.text
        op.wait_health(SLUG, "amber", timeout=30, **{".reason": "inbound event(s) need attention"})
        assert "order.created" in op.card(SLUG, ".dead-events")
        assert op.page_not_reloaded()
        op.save("06-dashboard-amber")

        # 8. Add the missing mapping, then replay from the inbox (the dashboard's link filters it).
        add_listing(op, mug.code, catalog[mug.code]["product_id"])
        op.open("/admin/dashboard/")
        op.wait(lambda _: op.card(SLUG, "td.dead a"), message="the dashboard")
        op.click_in_card(SLUG, "td.dead a")
        op.wait(ec.presence_of_element_located((By.ID, "result_list")), message="the inbox")
        assert "order.created" in op.text() and "Parked" in op.text()
        op.save("07-inbox-parked")
        assert "queued again" in op.run_action("replay")
        order = InboundEvent.objects.get(channel=channel, topic="order.created")
        wait_until(lambda: InboundEvent.objects.get(pk=order.pk).status == InboundStatus.PROCESSED, timeout=30,
                   message="the replayed order to be processed")
        op.open(f"/admin/channels_app/inboundevent/?channel__id__exact={channel.pk}")
        assert "Processed" in op.text()
        op.save("08-inbox-processed")

        # 9. Reconciliation compares the channel with the hub and heals drift: the mug's first push (10, made
        #    while the sale was parked) overwrote the channel's own decrement, and the replayed sale is taken as
        #    already shown by the channel, so the channel can be left at 10 while the hub wants 8.
        op.open("/admin/dashboard/")
        op.wait_health(SLUG, "green", timeout=30, **{".dead": "0", ".failed": "0", ".backlog": "0"})
        before = sandbox.state.quantity(mug.code)
        run = reconcile_channel(channel)
        wait_until(lambda: sandbox.state.quantity(mug.code) == 8, timeout=30,
                   message=f"the mug on the channel (it showed {before}; reconciliation found {run.details})")
        print(f"the mug showed {before} on the channel before reconciliation: {run.details}")
        op.open("/admin/dashboard/")
        op.wait_health(SLUG, "green", timeout=30, **{".backlog": "0", ".reconcile": "variance"})
        dashboard = op.save("09-dashboard-final")
        if os.environ.get("UPDATE_DOCS_SCREENSHOTS") or not DOCS_SHOT.exists():  # else a test run dirties git
            DOCS_SHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dashboard, DOCS_SHOT)
    except Exception:
        op.save("failure")
        raise
    finally:
        sandbox.stop()
