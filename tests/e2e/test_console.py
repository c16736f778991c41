"""The web console at /ui in a real browser: Debian's headless Chromium driven by
Playwright, against a served gateway with demo backends.

Logging in (a wrong token is refused), the servers live, searching the catalog, running
a tool, approving a changed pin, a killed backend's row turning to error, an action
without its CSRF token refused, draining and re-admitting a replica; a stdio gateway's
console on `--metrics-port`; and the gateway signed in to an OAuth backend from the
console (FastMCP's in-memory authorization server grants the code without a person, so
the browser follows its redirect to the gateway's callback by itself).
With MCP_AGG_SCREENSHOTS=1 the pages are written to docs/img/ for the docs and the
README (not in CI: it would dirty the tree).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import httpx
import pytest
from fastmcp import Client
from playwright.async_api import Browser, Page, async_playwright

from tests.e2e.procs import (
    BACKENDS,
    REPO,
    backend_process,
    demo_servers,
    eventually,
    free_port,
    kill_group,
    mcp_agg,
    port_open,
    served_gateway,
    stdio_gateway,
    wait_until,
)
from tests.e2e.signin import login, stored

pytestmark = pytest.mark.e2e

TOKEN = "e2e-console-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CHROMIUM = Path("/usr/bin/chromium")
HAS_CHROMIUM = CHROMIUM.exists()
#: What the issue asks Chromium to be launched with: no sandbox (root in CI), nothing
#: fetched from the network by the browser itself.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = REPO / "docs" / "img"
#: The description the lock pretends units_convert had when it was approved.
PINNED = "Convert a value between units (approved wording)."


@dataclass(frozen=True)
class Served:
    url: str
    #: The HTTP backend the test runs (not the gateway), which the kill test ends.
    doomed: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A gateway with units and notes (stdio), and `doomed`, an HTTP clock the test
    runs; its lock pins units_convert with another description (a changed pin)."""
    folder = tmp_path_factory.mktemp("console")
    port = free_port()
    config = folder / "servers.toml"
    with backend_process("clock.py", "--transport", "http", port=port) as doomed:
        config.write_text(
            f"""
[gateway]
connect_timeout = 30
pin = "warn"
health_interval = 1
unhealthy_threshold = 1
audit_log = "audit.jsonl"
[gateway.admin]
token = "{TOKEN}"
{demo_servers(folder, "units", "notes", notes="replicas = 2")}
[[servers]]
name = "doomed"
url = "http://127.0.0.1:{port}/mcp"
"""
        )
        locked = mcp_agg("lock", "-c", str(config))
        assert locked.returncode == 0, locked.stderr
        tamper(folder / "servers.lock", "units_convert")
        with served_gateway(config) as (url, _proc):
            yield Served(url.removesuffix("/mcp"), doomed)


def tamper(lock: Path, tool: str) -> None:
    """Make the lock's entry of `tool` one for another description."""
    text = lock.read_text()
    head, _, rest = text.partition(f"[tools.{tool}]\n")
    entry, sep, tail = rest.partition("\n\n")
    fields = dict(line.split(" = ", 1) for line in entry.splitlines())
    definition = json.loads(json.loads(fields["definition"]))
    definition["description"] = PINNED
    fields["definition"] = json.dumps(json.dumps(definition))
    fields["sha256"] = fields["description_sha256"] = json.dumps("0" * 64)
    entry = "\n".join(f"{key} = {value}" for key, value in fields.items())
    lock.write_text(f"{head}[tools.{tool}]\n{entry}{sep}{tail}")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert HAS_CHROMIUM, "needs Debian's chromium (apt-get install chromium; .ci/run does)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


async def logged_in(browser: Browser, url: str, *, phone: bool = False) -> Page:
    """A page logged in (on a dark phone-width screen with `phone`), at /ui/servers."""
    context = await (
        browser.new_context(color_scheme="dark", viewport={"width": 390, "height": 844})
        if phone
        else browser.new_context()
    )
    page = await context.new_page()
    await page.goto(f"{url}/ui/")
    await page.get_by_label("Admin token").fill(TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/ui/servers")
    return page


async def shot(page: Page, name: str) -> None:
    if os.environ.get("MCP_AGG_SCREENSHOTS") == "1":
        await page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)


# The rows are read in one evaluation each: htmx swaps them while the page polls, and a
# locator kept across a swap would wait for an element that is gone.


async def state_of(page: Page, replica: str) -> str:
    found = await page.evaluate(
        "replica => document.querySelector("
        "`tr[data-replica=\"${replica}\"] [data-field=state]`)?.textContent.trim() ?? ''",
        replica,
    )
    return str(found)


async def shows(page: Page, replica: str, state: str) -> bool:
    """Whether the servers page shows `replica` in `state` now."""
    return await state_of(page, replica) == state


async def tools_listed(page: Page) -> list[str]:
    found = await page.eval_on_selector_all(
        "tr[data-tool]", "rows => rows.map(r => r.dataset.tool)"
    )
    return [str(name) for name in found]


async def test_a_wrong_token_is_refused_and_the_right_one_shows_the_servers(
    browser: Browser, served: Served
) -> None:
    page = await browser.new_page()
    await page.goto(f"{served.url}/ui/servers")
    assert page.url.endswith("/ui/login")  # no way in without the token
    await page.get_by_label("Admin token").fill("not-the-admin-token")
    await page.get_by_role("button", name="Log in").click()
    assert await page.get_by_role("alert").text_content() == "the admin token is not valid"
    assert page.url.endswith("/ui/login")

    page = await logged_in(browser, served.url)
    for replica in ("units-1", "notes-1", "doomed-1"):
        await eventually(partial(shows, page, replica, "connected"), f"{replica} connected")
    cookies = await page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("mcp_agg_console", True, "Strict")
    ]
    assert TOKEN not in cookies[0]["value"]
    assert TOKEN not in await page.content()
    await shot(page, "servers")


async def test_search_the_catalog_and_run_a_tool(browser: Browser, served: Served) -> None:
    page = await logged_in(browser, served.url)
    await page.get_by_role("link", name="Catalog").click()
    await page.wait_for_url("**/ui/catalog")
    assert len(await tools_listed(page)) > 5
    await page.get_by_label("Search the catalog").fill("convert")

    async def only_convert() -> bool:
        return await tools_listed(page) == ["units_convert"]

    await eventually(only_convert, "the search to leave only units_convert", timeout=10)
    await shot(page, "catalog")

    await page.get_by_role("link", name="units_convert").click()
    await page.wait_for_url("**/ui/tools/units_convert")
    await page.get_by_label("value").fill("10")
    await page.get_by_label("from_unit").fill("km")
    await page.get_by_label("to_unit").fill("mi")
    await page.get_by_role("button", name="Call units_convert").click()
    result = page.locator("#raw-result")
    await result.wait_for(timeout=10_000)
    answer = json.loads(await result.text_content() or "")
    assert answer["isError"] is False
    assert answer["structuredContent"]["result"] == pytest.approx(6.2137, abs=1e-3)
    await shot(page, "tool-runner")

    # The call in the recent calls, read from the audit log: with its client.
    await page.goto(f"{served.url}/ui/traffic")
    row = page.locator('table[aria-label="Recent calls"] tr', has_text="units_convert").first
    assert await row.locator('[data-field="client"]').text_content() == "console"


async def test_approve_a_changed_pin(browser: Browser, served: Served) -> None:
    page = await logged_in(browser, served.url)
    await page.goto(f"{served.url}/ui/catalog?q=units_convert")
    pin = page.locator('tr[data-tool="units_convert"] [data-field="pin"]')
    assert (await pin.text_content() or "").strip() == "changed"
    diff = page.locator('tr[data-tool="units_convert"] pre.diff')
    await page.locator('tr[data-tool="units_convert"] summary').click()
    text = await diff.text_content() or ""
    assert f'-  "description": "{PINNED}",' in text
    assert re.search(r'^\+  "description": "Convert', text, re.MULTILINE)
    await shot(page, "pin-diff")

    await page.get_by_role("link", name="Actions").click()
    await page.wait_for_url("**/ui/actions")
    page.once("dialog", lambda dialog: dialog.accept())  # the confirmation
    await page.get_by_role("button", name="Approve the catalog").click()
    await page.get_by_text("tools pinned").wait_for(timeout=10_000)
    await page.goto(f"{served.url}/ui/catalog?q=units_convert")
    assert (await pin.text_content() or "").strip() == "ok"


async def test_an_action_without_the_csrf_token_is_refused(
    browser: Browser, served: Served
) -> None:
    page = await logged_in(browser, served.url)
    # The page's own request context: the login cookie is sent, the CSRF token is not.
    refused = await page.request.post(f"{served.url}/ui/actions/reload")
    assert refused.status == 403
    assert "CSRF" in await refused.text()
    forged = await page.request.post(
        f"{served.url}/ui/actions/reload", headers={"X-CSRF-Token": "f" * 64}
    )
    assert forged.status == 403
    # Through the page (htmx sends the token), after the confirmation: done.
    await page.get_by_role("link", name="Actions").click()
    await page.wait_for_url("**/ui/actions")
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Reload").click()
    await page.get_by_text("config reloaded").wait_for(timeout=10_000)


async def test_a_killed_backend_turns_to_error_live(browser: Browser, served: Served) -> None:
    page = await logged_in(browser, served.url, phone=True)
    await eventually(lambda: shows(page, "doomed-1", "connected"), "doomed-1 connected")
    kill_group(served.doomed)  # SIGKILL to its process group
    # No reload: the page polls its rows; the gateway probes every second (health_interval).
    await eventually(lambda: shows(page, "doomed-1", "error"), "doomed-1 in error", timeout=10)
    assert await state_of(page, "units-1") == "connected"  # the others go on
    await shot(page, "phone-dark")


async def test_a_stdio_gateway_serves_it_on_its_metrics_port(tmp_path: Path) -> None:
    config = tmp_path / "servers.toml"
    config.write_text(f'[gateway.admin]\ntoken = "{TOKEN}"\n{demo_servers(tmp_path, "units")}')
    port = free_port()
    with stdio_gateway(config, "--metrics-port", str(port)):
        wait_until(lambda: port_open(port), 30, "the --metrics-port listener")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/ui/servers")).headers["location"] == "/ui/login"

            async def connected() -> bool:
                page = await http.get(
                    "/ui/servers/rows", headers={"Authorization": f"Bearer {TOKEN}"}
                )
                return 'data-field="state">connected<' in page.text

            await eventually(connected, "units-1 connected on the console of --metrics-port")


async def calls_of(url: str) -> dict[str, int]:
    """Calls per replica, from the admin API."""
    async with httpx.AsyncClient() as http:
        listed = (await http.get(f"{url}/admin/servers", headers=ADMIN)).json()
    return {r["id"]: r["calls"] for s in listed["servers"] for r in s["replicas"]}


async def act(page: Page, button: str, says: str) -> None:
    """Press an action's button on the Actions page, confirm, and wait for its answer."""
    await page.get_by_role("link", name="Actions").click()
    await page.wait_for_url("**/ui/actions")
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name=button, exact=True).click()
    await page.get_by_text(says).wait_for(timeout=10_000)


async def drained_shown(page: Page, replica: str) -> bool:
    found = await page.evaluate(
        'replica => !!document.querySelector(`tr[data-replica="${replica}"] [data-field=drained]`)',
        replica,
    )
    return bool(found)


async def test_drain_a_replica_then_readmit_it(browser: Browser, served: Served) -> None:
    page = await logged_in(browser, served.url)
    await eventually(lambda: shows(page, "notes-2", "connected"), "notes-2 connected")
    await act(page, "Drain notes-1", '"drained": true')
    before = await calls_of(served.url)
    async with Client(f"{served.url}/mcp") as client:
        for _ in range(4):
            await client.call_tool("notes_list_notes", {})
    after = await calls_of(served.url)
    assert after["notes-1"] == before["notes-1"]  # no new call
    assert after["notes-2"] == before["notes-2"] + 4  # the other took them all
    await page.get_by_role("link", name="Servers").click()
    await eventually(lambda: drained_shown(page, "notes-1"), "notes-1 shown drained")
    assert not await drained_shown(page, "notes-2")

    await act(page, "Re-admit notes-1", '"drained": false')
    await page.get_by_role("link", name="Servers").click()
    await eventually(
        lambda: _not(drained_shown(page, "notes-1")), "notes-1 no longer shown drained"
    )
    async with Client(f"{served.url}/mcp") as client:
        for _ in range(4):
            await client.call_tool("notes_list_notes", {})
    assert (await calls_of(served.url))["notes-1"] > after["notes-1"]  # it takes calls again


async def _not(shown: Awaitable[bool]) -> bool:
    return not await shown


async def test_sign_in_to_a_backend_from_the_console(
    browser: Browser, tmp_path: Path, data_dir: Path
) -> None:
    port, backend_port = free_port(), free_port()
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""
[gateway]
token_key = "${{MCP_AGG_TOKEN_KEY}}"
public_url = "http://127.0.0.1:{port}"
[gateway.admin]
token = "{TOKEN}"

[[servers]]
name = "remote"
url = "http://127.0.0.1:{backend_port}/mcp"
auth = {{ type = "oauth" }}
"""
    )
    with (
        backend_process(BACKENDS / "protected.py", port=backend_port),
        served_gateway(config, port=port) as (mcp_url, _),
    ):
        url = mcp_url.removesuffix("/mcp")
        page = await logged_in(browser, url)
        sign_in = page.locator('tr[data-server="remote"] [data-field="sign-in"]')
        assert "not signed in" in (await sign_in.text_content() or "")

        await page.get_by_role("link", name="Actions").click()
        await page.wait_for_url("**/ui/actions")
        page.once("dialog", lambda dialog: dialog.accept())
        await page.get_by_role("button", name="Sign in to remote").click()
        # To the authorization server, which approves at once and sends the browser back
        # to the gateway's callback.
        await page.wait_for_url("**/oauth/callback?**", timeout=20_000)
        await page.get_by_text("Signed in to remote").wait_for(timeout=10_000)
        callback = page.url

        async def listed() -> bool:
            await page.goto(f"{url}/ui/catalog?q=remote")
            return "remote_token" in await tools_listed(page)

        await eventually(listed, "the backend's tools in the catalog", timeout=20)
        await page.goto(f"{url}/ui/servers")
        said = await sign_in.text_content() or ""
        assert "not signed in" not in said
        assert "refreshable" in said
        # Where `mcp-agg login` keeps them (the file: no keyring here).
        kept = stored(data_dir, f"http://127.0.0.1:{backend_port}/mcp")
        assert (await kept.get_tokens()) is not None
        replayed = await page.request.get(callback)  # the state is single-use
        assert replayed.status == 400
        assert "already completed" in await replayed.text()
        # `mcp-agg login` still works after it: the registration made for the gateway's
        # callback is not offered for its loopback one.
        assert "Signed in to remote" in await anyio.to_thread.run_sync(login, config)
