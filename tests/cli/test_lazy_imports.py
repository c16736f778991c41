"""What `mcp-agg --help` and `mcp-agg check` import: not the MCP stack.

Importing fastmcp and mcp takes over a second; a command that needs neither must not
pay for them (docs/benchmarks.md, "Startup and import time"). Each case runs the real
command in a fresh interpreter and reads `sys.modules` after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

#: The MCP stack and its HTTP client: none of them is needed to print help or check a config.
HEAVY = ("fastmcp", "mcp", "mcp_types", "httpx", "httpx2")

#: Runs `mcp-agg ARGS` and prints, as JSON, the HEAVY modules imported by then.
PROBE = """
import json, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["mcp-agg", *json.loads(sys.argv[1])]
from mcp_agg.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""

CONFIG = """\
[[servers]]
name = "notes"
command = "python"
args = ["notes.py"]

[[servers]]
name = "web"
url = "http://127.0.0.1:9/mcp"
auth = { type = "oauth", client_metadata_url = "https://example.com/mcp-agg.json" }
"""


def probed(probe: str, args: list[str], cwd: Path, modules: Sequence[str]) -> Any:
    """What `probe` printed last, as JSON, having run `mcp-agg ARGS` watching `modules`."""
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(args), json.dumps(list(modules))],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        stdin=subprocess.DEVNULL,  # `serve` on stdio: the client has gone, it stops
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def imported_by(args: list[str], cwd: Path, modules: Sequence[str] = HEAVY) -> list[str]:
    """The `modules` (by default HEAVY) `mcp-agg ARGS` has imported when it ends."""
    loaded: list[str] = probed(PROBE, args, cwd, modules)
    return loaded


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        *([name, "--help"] for name in ("serve", "tools", "status", "call", "check", "login")),
        ["--version"],
        ["check", "-c", "servers.toml"],
    ],
    ids=" ".join,
)
def test_the_command_imports_no_mcp_stack(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "servers.toml").write_text(CONFIG)
    assert imported_by(args, tmp_path) == []


def test_the_probe_sees_what_a_command_that_runs_the_gateway_imports(tmp_path: Path) -> None:
    # Else the test above could pass because the probe sees nothing.
    (tmp_path / "servers.toml").write_text(CONFIG)
    assert {"fastmcp", "mcp"} <= set(imported_by(["call", "x", "--args", "[]"], tmp_path))


def test_what_serve_runs_before_starting_its_backends_imports_no_mcp_stack() -> None:
    # `serve` starts its stdio backends between loading the config and importing the
    # MCP stack (backend/early.py): an MCP import there would make the start late again.
    probe = (
        "import json, sys\n"
        "import mcp_agg.backend.early, mcp_agg.cli.runner, mcp_agg.cli.serve\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


#: What a gateway on stdio over a servers.toml uses none of: the translation of MCP
#: clients' JSON configs (and json5), the TOML writer (`import`, `lock`), the
#: `--metrics-port` listener, and the tools of `[[fanout]]` and `expose_gateway_tools`.
#: Each is a little CPU and memory at every start, while the backends compete with the
#: gateway for the same cores (docs/benchmarks.md).
UNUSED_BY_SERVE = (
    "mcp_agg.config.mcpservers",
    "json5",
    "tomli_w",
    "mcp_agg.front.listener",
    "mcp_agg.components.fanout",
    "mcp_agg.components.gateway_tools",
)

#: A backend that exits at once: the gateway starts without it, then stops at stdin's end.
GONE = """\
[[servers]]
name = "gone"
command = "false"
"""

#: GONE, with a fan-out and the gateway's own tools.
WITH_OWN_TOOLS = f"""\
[gateway]
expose_gateway_tools = true

{GONE}
[[fanout]]
name = "both"
targets = ["gone_a", "gone_b"]
"""


@pytest.mark.parametrize(
    ("args", "config", "imported"),
    [
        # `mcp_agg.front.stdio` shows the run got as far as the stack: else the absence
        # of the others would prove nothing.
        (["serve"], "servers.toml", ["mcp_agg.front.stdio"]),
        # The other side of each: what needs them still imports them.
        (
            ["serve", "--metrics-port", "0"],
            "servers.toml",
            ["mcp_agg.front.listener", "mcp_agg.front.stdio"],
        ),
        (["check"], "servers.json", ["json5", "mcp_agg.config.mcpservers"]),
        (
            ["serve"],
            "tools.toml",
            [
                "mcp_agg.components.fanout",
                "mcp_agg.components.gateway_tools",
                "mcp_agg.front.stdio",
            ],
        ),
    ],
    ids=["serve", "serve --metrics-port", "check a JSON config", "serve with its own tools"],
)
def test_serve_imports_only_what_its_config_uses(
    args: list[str], config: str, imported: list[str], tmp_path: Path
) -> None:
    (tmp_path / "servers.toml").write_text(GONE)
    (tmp_path / "tools.toml").write_text(WITH_OWN_TOOLS)
    (tmp_path / "servers.json").write_text(
        json.dumps({"mcpServers": {"gone": {"command": "false"}}})
    )
    watched = [*UNUSED_BY_SERVE, "mcp_agg.front.stdio"]
    assert imported_by([*args, "-c", config], tmp_path, watched) == sorted(imported)


#: A gateway with no backend: nothing fails, nothing is retried or reconnected.
NO_BACKENDS = """\
[gateway]
name = "quiet"
"""


@pytest.mark.parametrize(
    ("config", "imported"),
    [
        (NO_BACKENDS, ["mcp_agg.front.stdio"]),
        # A backend that exits at once: its replica reconnects, with tenacity's backoff.
        (GONE, ["mcp_agg.front.stdio", "mcp_agg.resilience.retryloop", "tenacity"]),
    ],
    ids=["nothing fails", "a backend fails"],
)
def test_serve_imports_tenacity_at_the_first_failure(
    config: str, imported: list[str], tmp_path: Path
) -> None:
    # Most gateways never retry a call or reconnect a backend: tenacity (0.35 MiB of
    # RSS) is imported by the first failure (`resilience/retryloop.py`).
    (tmp_path / "servers.toml").write_text(config)
    watched = ["tenacity", "mcp_agg.resilience.retryloop", "mcp_agg.front.stdio"]
    assert imported_by(["serve", "-c", "servers.toml"], tmp_path, watched) == imported


#: The OAuth client, its token storage and sealed sign-in links (with cryptography's
#: Fernet): for a server with `auth` only.
OAUTH = (
    "cryptography.fernet",
    "mcp_agg.backend.oauth.links",
    "mcp_agg.backend.oauth.provider",
    "mcp_agg.backend.oauth.storage",
    "mcp_agg.backend.oauth.vault",
)

#: GONE, and an HTTP backend that signs in with OAuth (nothing listens: it fails).
WITH_AUTH = f"""\
{GONE}
[[servers]]
name = "web"
url = "http://127.0.0.1:9/mcp"
auth = {{ type = "oauth", client_metadata_url = "https://example.com/mcp-agg.json" }}
"""


@pytest.mark.parametrize(
    ("config", "imported"),
    [
        (GONE, []),
        (
            WITH_AUTH,
            [
                "cryptography.fernet",
                "mcp_agg.backend.oauth.provider",
                "mcp_agg.backend.oauth.storage",
                "mcp_agg.backend.oauth.vault",
            ],
        ),
    ],
    ids=["no server with auth", "a server with auth"],
)
def test_serve_imports_oauth_for_a_server_with_auth(
    config: str, imported: list[str], tmp_path: Path
) -> None:
    (tmp_path / "servers.toml").write_text(config)
    watched = [*OAUTH, "mcp_agg.front.stdio"]
    got = imported_by(["serve", "-c", "servers.toml"], tmp_path, watched)
    assert got == sorted([*imported, "mcp_agg.front.stdio"])


def probe_at(moment: str) -> str:
    """A probe that runs `mcp-agg ARGS` with `moment` run first (code that patches the
    command so that it appends to `seen` the `watched` modules imported at some point of
    its run) and prints `seen` as JSON."""
    return f"""
import json, sys
watched = json.loads(sys.argv[2])
seen = []
{moment}
sys.argv = ["mcp-agg", *json.loads(sys.argv[1])]
from mcp_agg.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(seen))
"""


#: Runs `mcp-agg ARGS` up to where the HTTP front would listen (its server built, the
#: operations and sign-in routes among it); the front is not served.
PROBE_HTTP_FRONT = probe_at("""
import mcp_agg.front.http as front
async def serve_http(*args, **kwargs):
    seen.append(sorted(m for m in watched if m in sys.modules))
front.serve_http = serve_http
""")

#: The web console (its templates: jinja2) and the browser sign-in (its sealed links and
#: flow; the console says why a sign-in failed with the links' error).
CONSOLE = ("jinja2", "mcp_agg.front.ui")
SIGN_IN = ("mcp_agg.backend.oauth.links", "mcp_agg.backend.oauth.webflow")


@pytest.mark.parametrize(
    ("gateway", "imported"),
    [
        ("", []),
        (
            '[gateway.admin]\ntoken = "an-admin-token-of-16+"\n',
            [*CONSOLE, "mcp_agg.backend.oauth.links"],
        ),
        (
            '[gateway]\ntoken_key = "a-token-key-of-16+"\npublic_url = "https://gw.example"\n',
            SIGN_IN,
        ),
    ],
    ids=["neither", "the console", "the sign-in"],
)
def test_the_http_front_imports_the_console_and_sign_in_where_the_config_has_them(
    gateway: str, imported: Sequence[str], tmp_path: Path
) -> None:
    (tmp_path / "servers.toml").write_text(gateway)
    args = ["serve", "--transport", "http", "--port", "0", "-c", "servers.toml"]
    seen = probed(PROBE_HTTP_FRONT, args, tmp_path, [*CONSOLE, *SIGN_IN])
    assert seen == [sorted(imported)]


#: Runs `mcp-agg ARGS` with the early backends' start wrapped: what is imported by then.
PROBE_AT_EARLY_START = probe_at("""
from mcp_agg.backend.early import EarlyStarts
start = EarlyStarts._start
async def _start(self, specs):
    seen.append(sorted(m for m in watched if m in sys.modules))
    await start(self, specs)
EarlyStarts._start = _start
""")


def test_serve_starts_its_backends_before_importing_the_mcp_stack(tmp_path: Path) -> None:
    # What `serve` does before the start (its logging, the config) must not import the
    # SDK either, nor starlette (the config checks the HTTP front's Host and Origin
    # patterns): the backends would start later by their imports, for nothing.
    (tmp_path / "servers.toml").write_text(GONE)
    seen = probed(PROBE_AT_EARLY_START, ["serve"], tmp_path, [*HEAVY, "starlette"])
    assert seen == [[]]  # one start, nothing of them imported by then


#: Runs `mcp-agg serve` up to where the stdio front would serve, and notes there the
#: modules whose classes or functions are still alive among typer's (and its vendored
#: click's), and which of the command line's modules are imported.
PROBE_STDIO_FRONT = probe_at("""
import gc, types
import mcp_agg.front.stdio as front
async def serve_stdio(*args, **kwargs):
    gc.collect()
    alive = {
        str(o.__module__) for o in gc.get_objects()
        if isinstance(o, (type, types.FunctionType))
        and str(o.__module__).startswith(("typer", "annotated_doc", "shellingham"))
    }
    seen.append({
        "alive": sorted(alive),
        "imported": sorted(m for m in watched if m in sys.modules),
    })
front.serve_stdio = serve_stdio
""")


def test_serve_drops_the_command_line_before_it_serves(tmp_path: Path) -> None:
    # typer and the command modules would stay in memory for the gateway's whole life
    # (about 1.2 MB: docs/benchmarks.md); `serve` hands its run over once they are gone.
    # stdin is a pipe, so the early handshake's thread starts, as under a real client:
    # threading copies `sys.excepthook` into each thread, and typer's would keep typer.
    (tmp_path / "servers.toml").write_text(GONE)
    watched = ["typer", "difflib", "mcp_agg.cli.commands", "mcp_agg.cli.serve"]
    args = ["serve", "-c", "servers.toml"]
    done = subprocess.run(
        [sys.executable, "-c", PROBE_STDIO_FRONT, json.dumps(args), json.dumps(watched)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        input="",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [{"alive": [], "imported": []}]
