"""The web UI in a real browser (Debian's chromium, headless, driven by Playwright).

The pipeline's stages run in-process (``tests.pipeline_process.running``); the API and the UI
are served the way ``pipeline.application.app.run_process`` serves them (the authentication middleware,
``api_routes`` + ``ui_routes``, under a route prefix), by ``ui_server`` below, on the same NATS.
Notifications go to a real local HTTP receiver (webhook and Slack payloads).

Skipped when chromium or playwright is missing, unless ``TOCSIN_REQUIRE_CHROMIUM=1`` (CI).
Screenshots of each view are written to ``docs/ui/`` when ``TOCSIN_UI_SCREENSHOTS=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware

from pipeline.application.api.app import api_routes
from pipeline.application.api.auth.middleware import Authenticator, AuthMiddleware, auth_exception_handlers
from pipeline.application.api.context import ApiContext
from pipeline.application.api.ui import ui_routes
from pipeline.application.app import Settings, _Prefixed
from pipeline.application.config.auth import AuthConfig
from pipeline.application.graph import stream_names
from pipeline.application.http import HttpServer
from pipeline.application.settings import Loaded, load_text
from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect, ensure_stream
from pipeline.foundation.runtime.subjects import StreamNames
from tests.pipeline_process import running
from tests.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PREFIX = "/tocsin"  # served under a route prefix, as behind --web.route-prefix
DOCS = Path(__file__).resolve().parents[3] / "docs" / "ui"


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return "Debian's chromium is not installed (apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


if (why := _missing()) is not None:
    if os.environ.get("TOCSIN_REQUIRE_CHROMIUM") == "1":
        raise RuntimeError(f"TOCSIN_REQUIRE_CHROMIUM=1 but {why}")
    pytest.skip(why, allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402


def config(url: str, tocsin: str = "{default_org: acme}", repeat: str = "1s") -> str:
    return f"""
route:
  receiver: oncall
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: {repeat}
receivers:
  - name: oncall
    webhook_configs: [{{url: "{url}/hook"}}]
    slack_configs: [{{api_url: "{url}/slack", channel: "#oncall"}}]
tocsin: {tocsin}
"""


@dataclass
class Stack:
    url: str  # the UI's URL (under the prefix, trailing slash)
    api: httpx.AsyncClient
    receiver: Receiver


@contextlib.asynccontextmanager
async def ui_server(nats_url: str, settings: Settings, loaded: Loaded) -> AsyncIterator[str]:
    """The API and the UI as ``pipeline.application.app.run_process`` serves them, under ``PREFIX``."""
    nc = await connect(nats_url, name="tocsin-ui-test")
    await ensure_stream(nc.jetstream(), StreamNames("audit"))  # where writes are audited
    ctx = ApiContext(nc, nc.jetstream(), settings.partitions, loaded)
    ctx.streams = stream_names(settings.deployment)  # type: ignore[attr-defined]
    auth = loaded.tocsin.auth or AuthConfig()
    authenticator = Authenticator(auth, tokens=loaded.tokens, keys=loaded.keys)
    app = Starlette(routes=api_routes(ctx) + ui_routes(ctx), exception_handlers=auth_exception_handlers(),
                    middleware=[Middleware(AuthMiddleware, config=auth, default_org=loaded.tocsin.default_org,
                                           limits=loaded.tocsin.limits, authenticator=authenticator)])
    server = HttpServer(_Prefixed(app, PREFIX), "127.0.0.1:0")
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class _Status:
        def started(self, value: Any = None) -> None:
            started.set_result(None)

    task = asyncio.create_task(server.run(task_status=_Status()))  # type: ignore[arg-type]
    await asyncio.wait_for(started, 10)
    try:
        yield f"{server.url}{PREFIX}/"
    finally:
        server.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        await authenticator.aclose()
        await nc.close()


@contextlib.asynccontextmanager
async def _stack(nats_server: NatsServer, tmp_path: Path, tocsin: str = "{default_org: acme}",
                 repeat: str = "1s", deployment: str | None = None) -> AsyncIterator[Stack]:
    async with http_receiver() as receiver:
        loaded = load_text(config(receiver.url, tocsin, repeat), base_dir=tmp_path)
        settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                            loaded=loaded, partitions=2, external_url="http://tocsin.example/tocsin")
        if deployment:
            settings.deployment = deployment
        async with running(settings, ["rules", "router", "filter", "notifier"]), \
                ui_server(nats_server.url, settings, loaded) as url, \
                httpx.AsyncClient(base_url=url, timeout=10) as api:
            yield Stack(url, api, receiver)


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    async with _stack(nats_server, tmp_path) as s:
        yield s


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


async def _page(browser: Browser) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def _shot(page: Page, name: str) -> None:
    if os.environ.get("TOCSIN_UI_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(DOCS / f"{name}.png"), full_page=False)


def _sent(receiver: Receiver, path: str, alertname: str) -> list[Any]:
    return [r for r in receiver.received if r.path == path and isinstance(r.body, dict)
            and alertname in str(r.body.get("groupLabels") or r.body)]


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_on_call_flow(stack: Stack, browser: Browser) -> None:
    page = await _page(browser)
    nav = page.get_by_role("navigation", name="Main")
    await page.goto(stack.url)
    await expect(page.get_by_role("heading", name="Alerts")).to_be_visible()

    # a pushed alert appears without a reload (polling)
    await stack.api.post("api/v2/alerts", json=[
        {"labels": {"alertname": "DiskFull", "instance": "db1", "severity": "page"},
         "annotations": {"summary": "disk / is 97% full"}},
        {"labels": {"alertname": "HighLatency", "instance": "web1", "severity": "ticket"}}])
    disk = page.locator("li[aria-label='Alert DiskFull']")
    await expect(disk).to_be_visible(timeout=15_000)
    await expect(disk.locator(".state").first).to_have_text("firing")
    await expect(page.locator("li[aria-label='Alert HighLatency']")).to_be_visible()
    await expect(page.get_by_role("heading", name="Receiver oncall")).to_be_visible()
    await _until(lambda: _sent(stack.receiver, "/hook", "DiskFull"))

    # filter it: by typing a matcher, kept in the URL
    await page.get_by_label("Filter", exact=True).fill('{severity="page"}')
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("li[aria-label='Alert HighLatency']")).to_have_count(0)
    await expect(disk).to_be_visible()
    assert urllib.parse.unquote(page.url).endswith('#/alerts?filter={severity="page"}')

    # silence it from the UI: prefilled matchers, a preview of what it matches, then saved
    await disk.get_by_role("link", name="Silence").click()
    await expect(page.get_by_role("heading", name="New silence")).to_be_visible()
    assert 'alertname="DiskFull"' in await page.get_by_label("Matchers").input_value()
    await page.get_by_label("Created by").fill("alice")
    await page.get_by_label("Comment").fill("replacing the disk")
    await page.get_by_role("button", name="Preview matching alerts").click()
    await expect(page.locator("#sil-preview h2")).to_have_text("1 alert would be silenced")
    await _shot(page, "silence-new")
    await page.get_by_role("button", name="Create silence").click()
    await expect(page.get_by_role("heading", name="Silences")).to_be_visible()
    card = page.locator("article[data-silence]")
    await expect(card).to_have_count(1)
    await expect(card.locator(".state")).to_have_text("active")
    await _shot(page, "silences")

    # it becomes silenced in the alerts view, and its notifications stop
    await page.goto(stack.url + "#/alerts")
    await expect(disk.locator(".state.st-silenced")).to_be_visible(timeout=10_000)
    await asyncio.sleep(1.5)  # a flush in flight when the silence landed may still deliver
    sent = len(_sent(stack.receiver, "/hook", "DiskFull"))
    await _until(lambda: len(_sent(stack.receiver, "/hook", "HighLatency")) >= 3, timeout=15)  # repeats go on
    assert len(_sent(stack.receiver, "/hook", "DiskFull")) == sent, "a silenced alert was notified again"

    # acknowledge a group (HighLatency's), with a comment
    group = page.locator("section.group", has=page.locator("li[aria-label='Alert HighLatency']"))
    await group.get_by_role("button", name="Acknowledge group").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Your name").fill("bob")
    await dialog.get_by_label("Comment").fill("on it")
    await dialog.get_by_role("button", name="Acknowledge").click()
    await expect(group.locator(".ghead .st-acknowledged")).to_be_visible(timeout=10_000)
    await expect(group.locator(".ghead")).to_contain_text("by bob: on it")
    await expect(group.get_by_role("button", name="Unacknowledge group")).to_be_visible()
    await _shot(page, "alerts")
    acks = (await stack.api.get("api/tocsin/acks")).json()
    assert [(a["kind"], a["by"], a["comment"]) for a in acks] == [("group", "bob", "on it")]

    # open its history: the group's deliveries and the acknowledgement, and the alert's changes
    await group.get_by_role("link", name="Group history").click()
    await expect(page.get_by_role("heading", name="History of group")).to_be_visible()
    timeline = page.get_by_role("list", name="Timeline, oldest first")
    await expect(timeline).to_contain_text("notified oncall (webhook[0])")
    await expect(timeline).to_contain_text("acknowledged by bob")
    await _shot(page, "history")
    await page.go_back()
    await page.locator("li[aria-label='Alert DiskFull']").get_by_role("link", name="History").click()
    await expect(page.get_by_role("heading", name="History of alert")).to_be_visible()
    alert_timeline = page.get_by_role("list", name="Timeline, oldest first")
    await expect(alert_timeline).to_contain_text("fired")
    await expect(alert_timeline).to_contain_text("notified oncall")

    # status: the route tree and the receiver's integrations
    await nav.get_by_role("link", name="Status").click()
    await expect(page.get_by_role("list", name="Route tree")).to_contain_text("oncall")
    await expect(page.get_by_role("row", name="oncall")).to_contain_text("slack, webhook")
    await _shot(page, "status")

    # edit the silence (a new comment), then expire it: the alert is no longer silenced
    await nav.get_by_role("link", name="Silences").click()
    await page.locator("article[data-silence]").get_by_role("link", name="Edit").click()
    await expect(page.get_by_role("heading", name="Edit silence")).to_be_visible()
    await page.get_by_label("Comment").fill("disk replaced tomorrow")
    await page.get_by_role("button", name="Update silence").click()
    await expect(page.locator("article[data-silence]")).to_contain_text("alice: disk replaced tomorrow")
    page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.locator("article[data-silence]").get_by_role("button", name="Expire").click()
    await expect(page.get_by_role("tab", name="Expired (1)")).to_be_visible(timeout=10_000)
    await nav.get_by_role("link", name="Alerts").click()
    await expect(disk.locator(".state").first).to_have_text("firing", timeout=10_000)
    await expect(disk.locator(".st-silenced")).to_have_count(0)
    assert page.errors == []  # type: ignore[attr-defined]


async def test_a_notifications_link_opens_its_alerts(stack: Stack, browser: Browser) -> None:
    await stack.api.post("api/v2/alerts", json=[{"labels": {"alertname": "Paged", "team": "db"}},
                                                {"labels": {"alertname": "Other", "team": "web"}}])
    await _until(lambda: _sent(stack.receiver, "/slack", "Paged"))
    slack = _sent(stack.receiver, "/slack", "Paged")[0].body
    link = slack["attachments"][0]["title_link"]  # Alertmanager's default template: __alertmanagerURL
    assert link == "http://tocsin.example/tocsin/#/alerts?receiver=oncall"
    ui = urllib.parse.urlsplit(stack.url)
    here = urllib.parse.urlsplit(link)._replace(scheme=ui.scheme, netloc=ui.netloc).geturl()
    page = await _page(browser)
    await page.goto(here)
    await expect(page.get_by_label("Receiver", exact=True)).to_have_value("oncall")
    await expect(page.locator("li[aria-label='Alert Paged']")).to_be_visible(timeout=10_000)
    # the link Alertmanager's UI shares, with a filter: the group's alerts only
    await page.goto(here + "&filter=" + urllib.parse.quote('{alertname="Paged"}'))
    await expect(page.get_by_label("Filter", exact=True)).to_have_value('{alertname="Paged"}')
    await expect(page.locator("li[aria-label='Alert Paged']")).to_be_visible(timeout=10_000)
    await expect(page.locator("li[aria-label='Alert Other']")).to_have_count(0)
    # a receiver that matches nothing shows nothing
    await page.goto(here.replace("receiver=oncall", "receiver=nobody"))
    await expect(page.get_by_text("No alerts match.")).to_be_visible()
    assert page.errors == []  # type: ignore[attr-defined]


async def test_sign_in_with_a_token_and_switch_organisation(nats_server: NatsServer, tmp_path: Path,
                                                            browser: Browser) -> None:
    (tmp_path / "tokens.yml").write_text("- {token: ops-token, subject: ops, orgs: ['*'], role: admin, push: true}\n")
    tocsin = "{default_org: acme, auth: {mode: static, static: {tokens_file: tokens.yml}}}"
    async with _stack(nats_server, tmp_path, tocsin) as s:
        ops = {"Authorization": "Bearer ops-token"}
        assert (await s.api.get("api/v2/alerts")).status_code == 401
        for org in ("acme", "beta"):
            r = await s.api.post("api/v2/alerts", json=[{"labels": {"alertname": f"{org.title()}Down"}}],
                                 headers={**ops, "X-Scope-OrgID": org})
            assert r.status_code == 200, r.text
        page = await _page(browser)
        await page.goto(s.url)  # the page and its assets are public; its API calls are not
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        await page.get_by_label("API token").fill("ops-token")
        await page.get_by_label("Organisation (optional)").fill("acme")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("li[aria-label='Alert AcmeDown']")).to_be_visible(timeout=10_000)
        await expect(page.locator("li[aria-label='Alert BetaDown']")).to_have_count(0)
        assert await page.evaluate("sessionStorage.getItem('tocsin.token')") == "ops-token"
        # the organisation switcher: the same identity, another organisation's alerts
        await page.get_by_role("combobox", name="Organisation").fill("beta")
        await page.get_by_role("button", name="Switch").click()
        await expect(page.locator("li[aria-label='Alert BetaDown']")).to_be_visible(timeout=10_000)
        await expect(page.locator("li[aria-label='Alert AcmeDown']")).to_have_count(0)
        # signing out forgets the token: the next read asks for it again
        await page.get_by_role("link", name="Sign out").click()
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert await page.evaluate("sessionStorage.getItem('tocsin.token')") is None
        assert page.errors == []  # type: ignore[attr-defined]


async def test_groups_come_a_page_at_a_time(stack: Stack, browser: Browser) -> None:
    r = await stack.api.post("api/v2/alerts", json=[{"labels": {"alertname": f"Load{i:02}"}} for i in range(60)])
    assert r.status_code == 200, r.text
    page = await _page(browser)
    await page.goto(stack.url)
    await expect(page.locator("#alerts-summary")).to_contain_text("60 alerts in 60 groups", timeout=15_000)
    groups = page.locator("section.group")
    await expect(groups).to_have_count(50)
    await expect(page.locator("li[aria-label='Alert Load00']")).to_be_visible()  # the UI's order: by labels
    await page.get_by_role("button", name="Next").click()
    await expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    await expect(groups).to_have_count(10)
    await expect(page.locator("li[aria-label='Alert Load59']")).to_be_visible()
    await expect(page.locator("li[aria-label='Alert Load00']")).to_have_count(0)
    await page.get_by_role("button", name="Previous").click()
    await expect(page.locator("li[aria-label='Alert Load00']")).to_be_visible()
    assert page.errors == []  # type: ignore[attr-defined]


async def test_the_switcher_offers_the_organisations_the_token_may_read(nats_server: NatsServer, tmp_path: Path,
                                                                         browser: Browser) -> None:
    (tmp_path / "tokens.yml").write_text(
        "- {token: ops-token, subject: ops, orgs: ['*'], role: admin, push: true}\n"
        "- {token: team-token, subject: team, orgs: [beta, acme], role: responder}\n"
        "- {token: solo-token, subject: solo, orgs: [gamma], role: viewer}\n")
    tocsin = "{default_org: acme, auth: {mode: static, static: {tokens_file: tokens.yml}}}"
    async with _stack(nats_server, tmp_path, tocsin) as s:
        for org in ("acme", "beta", "gamma"):
            r = await s.api.post("api/v2/alerts", json=[{"labels": {"alertname": f"{org.title()}Down"}}],
                                 headers={"Authorization": "Bearer ops-token", "X-Scope-OrgID": org})
            assert r.status_code == 200, r.text
        page = await _page(browser)
        await page.goto(s.url)
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        # several organisations and none named: the first one (every read names one), the others offered
        await page.get_by_label("API token").fill("team-token")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("li[aria-label='Alert AcmeDown']")).to_be_visible(timeout=10_000)
        await expect(page.locator("#whoami")).to_have_text("team (responder)")
        switcher = page.get_by_role("combobox", name="Organisation")
        await expect(switcher).to_have_value("acme")
        assert await page.locator("#org-list option").evaluate_all("os => os.map(o => o.value)") == ["acme", "beta"]
        await switcher.fill("beta")
        await page.get_by_role("button", name="Switch").click()
        await expect(page.locator("li[aria-label='Alert BetaDown']")).to_be_visible(timeout=10_000)
        await expect(page.locator("li[aria-label='Alert AcmeDown']")).to_have_count(0)
        # an organisation the token may not read is refused in the page, the view stays
        await switcher.fill("gamma")
        await page.get_by_role("button", name="Switch").click()
        await expect(page.locator("#notice")).to_have_text("team may act for acme, beta, not gamma")
        await expect(page.locator("li[aria-label='Alert BetaDown']")).to_be_visible()
        assert await page.evaluate("sessionStorage.getItem('tocsin.org')") == "beta"
        # one organisation: nothing to switch to
        await page.get_by_role("link", name="Sign out").click()
        await page.get_by_label("API token").fill("solo-token")
        await page.get_by_label("Organisation (optional)").fill("")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("li[aria-label='Alert GammaDown']")).to_be_visible(timeout=10_000)
        await expect(page.locator("#whoami")).to_have_text("solo (viewer)")
        await expect(switcher).to_be_hidden()
        assert page.errors == []  # type: ignore[attr-defined]


@pytest.mark.skipif(os.environ.get("TOCSIN_UI_BENCH") != "1", reason="a measurement: TOCSIN_UI_BENCH=1 runs it")
@pytest.mark.parametrize("groups", [100, 10_000])
async def test_first_render_of_10000_alerts(nats_server: NatsServer, tmp_path: Path, browser: Browser,
                                            groups: int) -> None:
    """10,000 active alerts in ``groups`` groups: the time from navigation to the painted first page."""
    # the separate deployment: the chained one dead-letters pushes that touch many groups at once
    # ("more than an atomic batch holds"), which would measure nothing
    async with _stack(nats_server, tmp_path, repeat="4h", deployment="separate") as stack:
        await _measure(stack, browser, groups)


async def _measure(stack: Stack, browser: Browser, groups: int) -> None:
    n = 10_000
    for start in range(0, n, 100):
        r = await stack.api.post("api/v2/alerts", json=[
            {"labels": {"alertname": f"Load{i % groups}", "instance": f"host{i}"}} for i in range(start, start + 100)])
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 180
    while (seen := len((await stack.api.get("api/v2/alerts", timeout=60)).json())) < n:
        assert time.monotonic() < deadline, f"{seen} of {n} alerts listed"
        await asyncio.sleep(1)
    t = time.monotonic()
    await stack.api.get("api/v2/alerts/groups", timeout=60)
    api_s = time.monotonic() - t  # the API process's first read of them: every state message
    t = time.monotonic()
    await stack.api.get("api/v2/alerts/groups", timeout=60)
    again_s = time.monotonic() - t  # the next: only what was committed since (pipeline.application.api.state_cache)
    page = await _page(browser)
    await page.goto(stack.url)
    await expect(page.locator("#alerts-summary")).to_contain_text(f"{n} alerts", timeout=30_000)
    since_navigation = await page.evaluate(
        "performance.getEntriesByName('tocsin:alerts-rendered')[0].startTime")
    timings = await page.evaluate("window.tocsinTimings")
    print(f"\n{n} alerts in {groups} groups: API read {api_s * 1000:.0f} ms (first), {again_s * 1000:.0f} ms "
          f"(next); page painted "
          f"{since_navigation:.0f} ms after navigation (the page's reads {timings['fetch']:.0f} ms, "
          f"its render {timings['render']:.0f} ms)")
    assert timings["render"] < 1000
    assert await page.locator("li[data-fingerprint]").count() <= 50 * 10  # one page, not 10,000 rows
