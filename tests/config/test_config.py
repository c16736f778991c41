"""Tests for mcp_agg.config: servers.toml parsing, expansion, errors, discovery, JSON import."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mcp_agg.config import (
    BreakerConfig,
    Config,
    GatewayConfig,
    RetryConfig,
    ServerConfig,
    config_from_raw,
    find_config,
    import_mcp_servers,
    load_config,
)
from mcp_agg.errors import ConfigError
from mcp_agg.security.origin import HostOriginPolicy

# The configuration page's example (docs/configuration.md), every field, plus an explicit
# [gateway.breaker] override.
FULL_TOML = """\
[gateway]
name = "my-gateway"
separator = "__"
request_timeout = 45
connect_timeout = 10
balancer = "p2c-ewma"
health_interval = 0

[gateway.retry]
attempts = 4
base_delay = 0.2
max_delay = 2.5
budget_percent = 10

[gateway.breaker]
failure_threshold = 7
reset_timeout = 12
half_open_calls = 2

[[servers]]
name = "notes"
command = "python"
args = ["examples/servers/notes.py"]
env = { NOTES_DIR = "${HOME}/notes" }

[[servers]]
name = "search"
url = "http://127.0.0.1:3510/mcp"
headers = { Authorization = "Bearer ${SEARCH_TOKEN}" }
weight = 3
[[servers]]
name = "search"
url = "http://127.0.0.1:3511/mcp"
weight = 1

[[servers]]
name = "search-backup"
url = "http://127.0.0.1:3520/mcp"
failover_for = "search"
priority = 0
"""

ENV = {"HOME": "/home/tester", "SEARCH_TOKEN": "s3cret"}


def write(tmp_path: Path, text: str, name: str = "servers.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), environ={} if environ is None else environ)


def config_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    """Load `text` as servers.toml, expect a ConfigError, return its message."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc_info:
        load_config(path, environ={} if environ is None else environ)
    message = str(exc_info.value)
    assert str(path) in message, message
    return message


# ---------------------------------------------------------------------------- valid files


def test_full_example_parses_with_every_value(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_TOML)
    config = load_config(path, environ=ENV)

    assert config.source == path
    assert config.base_dir == tmp_path
    gw = config.gateway
    assert gw.name == "my-gateway"
    assert gw.separator == "__"
    assert gw.request_timeout == 45
    assert gw.connect_timeout == 10
    assert gw.balancer == "p2c-ewma"
    assert gw.health_interval == 0
    assert gw.retry == RetryConfig(attempts=4, base_delay=0.2, max_delay=2.5, budget_percent=10)
    assert gw.breaker == BreakerConfig(failure_threshold=7, reset_timeout=12, half_open_calls=2)

    notes, search1, search2, backup = config.servers
    assert notes.name == "notes"
    assert notes.command == "python"
    assert notes.args == ["examples/servers/notes.py"]
    assert notes.env == {"NOTES_DIR": "/home/tester/notes"}
    assert notes.url is None
    assert notes.kind == "stdio"

    assert search1.name == search2.name == "search"
    assert search1.url == "http://127.0.0.1:3510/mcp"
    assert search1.headers == {"Authorization": "Bearer s3cret"}
    assert search1.weight == 3
    assert search1.kind == "http"
    assert search2.url == "http://127.0.0.1:3511/mcp"
    assert search2.headers == {}
    assert search2.weight == 1

    assert backup.failover_for == "search"
    assert backup.priority == 0
    assert backup.kind == "http"

    specs = config.replica_specs()
    assert [(s.group, s.id) for s in specs] == [
        ("notes", "notes-1"),
        ("search", "search-1"),
        ("search", "search-2"),
        ("search-backup", "search-backup-1"),
    ]
    assert [s.prefix for s in specs] == ["notes", "search", "search", "search-backup"]


def test_full_example_server_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL_TOML, ENV)
    notes = config.servers[0]
    assert notes.id is None
    assert notes.cwd is None
    assert notes.headers == {}
    assert notes.transport is None
    assert notes.prefix is None
    assert notes.weight == 1
    assert notes.replicas == 1
    assert notes.enabled is True
    assert notes.timeout is None
    assert notes.retry is None
    assert notes.breaker is None
    assert notes.include_tools is None
    assert notes.exclude_tools == []
    assert notes.rename_tools == {}
    assert notes.failover_for is None
    assert notes.priority == 0
    # Per-server settings fall back to the gateway's.
    assert config.retry_for(notes) == config.gateway.retry
    assert config.breaker_for(notes) == config.gateway.breaker
    assert config.timeout_for(notes) == 45


def test_gateway_defaults_when_table_is_missing(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[[servers]]\nname = "a"\ncommand = "x"\n')
    assert config.gateway == GatewayConfig()
    gw = config.gateway
    assert gw.name == "mcp-agg"
    assert gw.separator == "_"
    assert gw.request_timeout == 60
    assert gw.connect_timeout == 20
    assert gw.balancer == "round-robin"
    assert gw.health_interval == 15
    assert gw.retry == RetryConfig(attempts=3, base_delay=0.1, max_delay=5.0, budget_percent=20)
    assert gw.breaker == BreakerConfig(failure_threshold=5, reset_timeout=30, half_open_calls=1)


def test_empty_file_is_a_valid_config_with_no_servers(tmp_path: Path) -> None:
    config = load_text(tmp_path, "")
    assert config.servers == []
    assert config.replica_specs() == []


def test_every_server_field(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        """
        [[servers]]
        name = "svc"
        id = "svc-main"
        command = "node"
        args = ["server.js", "--flag"]
        env = { A = "1" }
        cwd = "sub"
        prefix = "s"
        weight = 2.5
        enabled = true
        timeout = 9
        retry = { attempts = 2 }
        breaker = { failure_threshold = 3 }
        include_tools = ["a", "b"]
        exclude_tools = ["c"]
        rename_tools = { a = "alpha" }
        priority = 4

        [[servers]]
        name = "events"
        url = "https://example.com/sse"
        transport = "sse"
        prefix = ""
        """,
    )
    svc, events = config.servers
    assert svc.id == "svc-main"
    assert svc.args == ["server.js", "--flag"]
    assert svc.env == {"A": "1"}
    assert svc.cwd == "sub"
    assert svc.prefix == "s"
    assert svc.weight == 2.5
    assert svc.timeout == 9
    assert svc.retry == RetryConfig(attempts=2)
    assert svc.breaker == BreakerConfig(failure_threshold=3)
    assert svc.include_tools == ["a", "b"]
    assert svc.exclude_tools == ["c"]
    assert svc.rename_tools == {"a": "alpha"}
    assert svc.priority == 4
    assert config.retry_for(svc) == RetryConfig(attempts=2)
    assert config.breaker_for(svc) == BreakerConfig(failure_threshold=3)
    assert config.timeout_for(svc) == 9
    assert events.kind == "sse"
    specs = config.replica_specs()
    assert [s.id for s in specs] == ["svc-main", "events-1"]
    assert [s.prefix for s in specs] == ["s", ""]


def test_command_and_url_together_is_http(tmp_path: Path) -> None:
    config = load_text(
        tmp_path, '[[servers]]\nname = "a"\ncommand = "x"\nurl = "http://127.0.0.1:9/mcp"\n'
    )
    assert config.servers[0].kind == "http"
    assert config.replica_specs()[0].command == "x"


# ---------------------------------------------------------------------------- replicas


def test_replicas_by_shared_name(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        """
        [[servers]]
        name = "calc"
        command = "a"
        [[servers]]
        name = "other"
        command = "b"
        [[servers]]
        name = "calc"
        command = "c"
        [[servers]]
        name = "calc"
        command = "d"
        """,
    )
    specs = config.replica_specs()
    assert [(s.group, s.id, s.command) for s in specs] == [
        ("calc", "calc-1", "a"),
        ("other", "other-1", "b"),
        ("calc", "calc-2", "c"),
        ("calc", "calc-3", "d"),
    ]


def test_replicas_count(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[[servers]]\nname = "w"\ncommand = "x"\nreplicas = 3\n')
    specs = config.replica_specs()
    assert [s.id for s in specs] == ["w-1", "w-2", "w-3"]
    assert {s.group for s in specs} == {"w"}
    assert all(s.server is config.servers[0] for s in specs)


def test_replicas_with_explicit_id(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        """
        [[servers]]
        name = "w"
        id = "worker"
        command = "x"
        replicas = 2
        [[servers]]
        name = "w"
        id = "special"
        command = "y"
        [[servers]]
        name = "w"
        command = "z"
        """,
    )
    assert [s.id for s in config.replica_specs()] == ["worker-1", "worker-2", "special", "w-4"]


def test_disabled_servers_have_no_replicas(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        """
        [[servers]]
        name = "a"
        command = "x"
        enabled = false
        [[servers]]
        name = "b"
        command = "y"
        """,
    )
    assert config.servers[0].enabled is False
    assert [s.id for s in config.replica_specs()] == ["b-1"]


# ---------------------------------------------------------------------------- command and cwd


@pytest.mark.parametrize("command", ["python", "python3"])
def test_python_command_is_the_running_interpreter(tmp_path: Path, command: str) -> None:
    config = load_text(tmp_path, f'[[servers]]\nname = "a"\ncommand = "{command}"\n')
    spec = config.replica_specs()[0]
    assert spec.command == sys.executable
    # The config itself keeps what was written.
    assert config.servers[0].command == command


@pytest.mark.parametrize("command", ["node", "npx", "/usr/bin/python", "uvx", "pythonista"])
def test_other_commands_are_unchanged(tmp_path: Path, command: str) -> None:
    config = load_text(tmp_path, f'[[servers]]\nname = "a"\ncommand = "{command}"\n')
    assert config.replica_specs()[0].command == command


def test_url_server_has_no_command(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[[servers]]\nname = "a"\nurl = "http://h/mcp"\n')
    assert config.replica_specs()[0].command is None


def test_cwd_defaults_to_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = write(folder, '[[servers]]\nname = "a"\ncommand = "x"\n')
    spec = load_config(path, environ={}).replica_specs()[0]
    assert spec.base_dir == folder
    assert spec.cwd == folder


def test_relative_cwd_is_resolved_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = write(folder, '[[servers]]\nname = "a"\ncommand = "x"\ncwd = "../work/dir"\n')
    spec = load_config(path, environ={}).replica_specs()[0]
    assert spec.cwd == (tmp_path / "work" / "dir").resolve()
    assert spec.cwd.is_absolute()


def test_absolute_cwd_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    path = write(tmp_path, f'[[servers]]\nname = "a"\ncommand = "x"\ncwd = "{target}"\n')
    assert load_config(path, environ={}).replica_specs()[0].cwd == target.resolve()


# ---------------------------------------------------------------------------- ${VAR} expansion

VAR_TOML = """\
[[servers]]
name = "a"
command = "x"
args = ["${ARG}", "pre-${ARG}-post", "${MISSING:-fallback}", "${EMPTYDEFAULT:-}"]
env = { TOKEN = "${TOKEN}", PRICE = "$$5", LITERAL = "$${TOKEN}", LONE = "$HOME and $" }
"""


def test_variable_expansion(tmp_path: Path) -> None:
    config = load_text(tmp_path, VAR_TOML, {"ARG": "v", "TOKEN": "t0k"})
    server = config.servers[0]
    assert server.args == ["v", "pre-v-post", "fallback", ""]
    assert server.env == {
        "TOKEN": "t0k",
        "PRICE": "$5",
        "LITERAL": "${TOKEN}",
        "LONE": "$HOME and $",
    }


def test_set_variable_wins_over_default(tmp_path: Path) -> None:
    config = load_text(
        tmp_path, '[[servers]]\nname = "a"\ncommand = "${CMD:-default}"\n', {"CMD": "real"}
    )
    assert config.servers[0].command == "real"


def test_default_is_used_when_variable_is_empty(tmp_path: Path) -> None:
    # `${VAR:-default}` is the POSIX shell / docker compose form that substitutes the
    # default when VAR is unset *or empty* (`${VAR-default}` would be unset only).
    config = load_text(
        tmp_path,
        '[[servers]]\nname = "a"\ncommand = "x"\nenv = { LEVEL = "${LEVEL:-info}" }\n',
        {"LEVEL": ""},
    )
    assert config.servers[0].env == {"LEVEL": "info"}


def test_expansion_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_AGG_TEST_TOKEN", "from-env")
    path = write(
        tmp_path, '[[servers]]\nname = "a"\ncommand = "x"\nenv = { T = "${MCP_AGG_TEST_TOKEN}" }\n'
    )
    assert load_config(path).servers[0].env == {"T": "from-env"}


def test_expansion_in_gateway_table(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[gateway]\nname = "${GW:-gw}-x"\n')
    assert config.gateway.name == "gw-x"


def test_unset_variable_error_attributes(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\nname = "${GW_NAME}"\n')
    with pytest.raises(ConfigError) as exc_info:
        load_config(path, environ={})
    assert exc_info.value.source == str(path)
    assert exc_info.value.loc == "gateway.name"
    assert "GW_NAME" in exc_info.value.problem


# ---------------------------------------------------------------------------- error paths

#: A broken servers.toml, and what its error says besides the file's path: every
#: fragment must be in the message (the field, then the problem).
CONFIG_ERRORS = [
    # ${VAR} expansion
    pytest.param(
        '[[servers]]\nname = "a"\ncommand = "x"\nenv = { TOKEN = "${API_TOKEN}" }\n',
        ["API_TOKEN", "servers[0].env.TOKEN", "not set"],
        id="unset-variable-names-variable-field-and-file",
    ),
    pytest.param(
        '[[servers]]\nname = "a"\ncommand = "x"\n'
        '[[servers]]\nname = "b"\ncommand = "x"\nargs = ["ok", "${NOPE}"]\n',
        ["${NOPE}", "servers[1].args[1]"],
        id="unset-variable-in-a-list-names-the-index",
    ),
    # unknown keys
    pytest.param('gatway = "x"\n', ["gatway: unknown key"], id="unknown-top-level-key-gatway"),
    pytest.param('server = "x"\n', ["server: unknown key"], id="unknown-top-level-key-server"),
    pytest.param('sources = "x"\n', ["sources: unknown key"], id="unknown-top-level-key-sources"),
    # `source` is the internal field holding the file path; in the file it is just
    # another key nobody documented and must be rejected like any other typo.
    pytest.param('source = "/etc"\n', ["source: unknown key"], id="unknown-top-level-key-source"),
    pytest.param(
        "[gateway]\nrequest_timout = 5\n",
        ["gateway.request_timout: unknown key"],
        id="unknown-key-in-gateway",
    ),
    pytest.param(
        "[gateway.retry]\nattemps = 5\n",
        ["gateway.retry.attemps: unknown key"],
        id="unknown-key-in-gateway-retry",
    ),
    pytest.param(
        "[gateway.breaker]\nthreshold = 5\n",
        ["gateway.breaker.threshold: unknown key"],
        id="unknown-key-in-gateway-breaker",
    ),
    pytest.param(
        '[[servers]]\nname = "first"\ncommand = "x"\n'
        '[[servers]]\nname = "notes"\ncommand = "x"\nargss = []\n',
        ["servers[1] (notes).argss: unknown key"],
        id="unknown-key-in-server",
    ),
    pytest.param(
        '[[servers]]\nname = "n"\ncommand = "x"\nretry = { tries = 2 }\n',
        ["servers[0] (n).retry.tries: unknown key"],
        id="unknown-key-in-server-retry",
    ),
    pytest.param(
        '[gateway]\nfoo = 1\n[[servers]]\nname = "n"\ncommand = "x"\nbar = 2\n',
        ["gateway.foo: unknown key", "servers[0] (n).bar: unknown key"],
        id="several-problems-are-all-listed",
    ),
    # wrong types and values
    pytest.param(
        '[gateway]\nrequest_timeout = "soon"\n',
        ["gateway.request_timeout: ", "valid number"],
        id="gateway-request-timeout-not-a-number",
    ),
    pytest.param(
        "[gateway]\nname = 5\n", ["gateway.name: ", "valid string"], id="gateway-name-not-a-string"
    ),
    pytest.param("gateway = 5\n", ["gateway: ", "valid dictionary"], id="gateway-not-a-table"),
    pytest.param(
        "[gateway.retry]\nattempts = 1.5\n",
        ["gateway.retry.attempts: ", "valid integer"],
        id="gateway-retry-attempts-not-an-integer",
    ),
    pytest.param("servers = 3\n", ["servers: ", "valid list"], id="servers-not-a-list"),
    pytest.param("servers = [1]\n", ["servers[0]: ", "valid dictionary"], id="server-not-a-table"),
    pytest.param(
        '[[servers]]\nname = "n"\ncommand = "x"\nargs = "a b"\n',
        ["servers[0] (n).args: ", "valid list"],
        id="server-args-not-a-list",
    ),
    pytest.param(
        '[[servers]]\nname = "n"\ncommand = "x"\nargs = ["a", 1]\n',
        ["servers[0] (n).args[1]: ", "valid string"],
        id="server-arg-not-a-string",
    ),
    pytest.param(
        '[[servers]]\nname = "n"\ncommand = "x"\nenv = { PORT = 8080 }\n',
        ["servers[0] (n).env.PORT: ", "valid string"],
        id="server-env-value-not-a-string",
    ),
    pytest.param(
        '[[servers]]\nname = "n"\ncommand = "x"\nreplicas = "two"\n',
        ["servers[0] (n).replicas: ", "valid integer"],
        id="server-replicas-not-an-integer",
    ),
    pytest.param(
        '[[servers]]\nname = "n"\ncommand = "x"\nweight = 0\n',
        ["servers[0] (n).weight: ", "greater than 0"],
        id="server-weight-zero",
    ),
    pytest.param(
        '[[servers]]\nname = "n"\ncommand = "x"\ntimeout = -1\n',
        ["servers[0] (n).timeout: ", "greater than 0"],
        id="server-timeout-negative",
    ),
    pytest.param(
        '[[servers]]\nname = "n"\nurl = "http://h"\ntransport = "websocket"\n',
        ["servers[0] (n).transport: ", "'http' or 'sse'"],
        id="server-transport-unknown",
    ),
    pytest.param(
        '[[servers]]\ncommand = "x"\n',
        ["servers[0].name: ", "required key is missing"],
        id="server-name-missing",
    ),
    pytest.param(
        '[[servers]]\nname = ""\ncommand = "x"\n',
        ["servers[0] ().name: ", "at least 1"],
        id="server-name-empty",
    ),
    pytest.param(
        '[gateway]\nbalancer = "fastest"\n',
        [
            "gateway.balancer",
            *("round-robin", "least-connections", "weighted", "random", "p2c-ewma"),
        ],
        id="balancer-must-be-an-allowed-name",
    ),
    # keys that need other keys
    pytest.param(
        '[[servers]]\nname = "lonely"\nweight = 2\n',
        ["servers[0] (lonely)", "needs `command` (stdio) or `url`"],
        id="server-needs-command-or-url",
    ),
    pytest.param(
        '[[servers]]\nname = "s"\ncommand = "x"\ntransport = "sse"\n',
        ["servers[0] (s)", "`transport` applies only to a server with a `url`"],
        id="transport-without-url",
    ),
    pytest.param(
        '[[servers]]\nname = "s"\ncommand = "x"\nheaders = { A = "b" }\n',
        ["servers[0] (s)", "`headers` apply only to a server with a `url`"],
        id="headers-without-url",
    ),
    pytest.param(
        '[[servers]]\nname = "s"\nurl = "http://h/mcp"\nargs = ["a"]\n',
        ["servers[0] (s)", "apply only to a server with a `command`"],
        id="args-without-command",
    ),
    pytest.param(
        '[[servers]]\nname = "s"\nurl = "http://h/mcp"\nenv = { A = "b" }\n',
        ["servers[0] (s)", "apply only to a server with a `command`"],
        id="env-without-command",
    ),
    pytest.param(
        '[[servers]]\nname = "s"\nurl = "http://h/mcp"\ncwd = "sub"\n',
        ["servers[0] (s)", "apply only to a server with a `command`"],
        id="cwd-without-command",
    ),
    pytest.param(
        '[[servers]]\nname = "r"\nurl = "http://h/mcp"\nreplicas = 2\n',
        ["servers[0] (r)", "`replicas` applies only to a stdio server"],
        id="replicas-on-a-url-server",
    ),
    pytest.param(
        '[[servers]]\nname = "r"\ncommand = "x"\nurl = "http://h/mcp"\nreplicas = 2\n',
        ["servers[0] (r)", "`replicas` applies only to a stdio server"],
        id="replicas-on-a-launched-url-server",
    ),
    pytest.param(
        '[[servers]]\nname = "u"\nurl = "ftp://h/mcp"\n',
        ["servers[0] (u).url", "must start with http:// or https://", "'ftp://h/mcp'"],
        id="url-ftp",
    ),
    pytest.param(
        '[[servers]]\nname = "u"\nurl = "127.0.0.1:8000/mcp"\n',
        ["servers[0] (u).url", "must start with http:// or https://", "'127.0.0.1:8000/mcp'"],
        id="url-without-scheme",
    ),
    pytest.param(
        '[[servers]]\nname = "u"\nurl = "ws://h/mcp"\n',
        ["servers[0] (u).url", "must start with http:// or https://", "'ws://h/mcp'"],
        id="url-ws",
    ),
    pytest.param(
        '[[servers]]\nname = "u"\nurl = ""\n',
        ["servers[0] (u).url", "must start with http:// or https://", "''"],
        id="url-empty",
    ),
    pytest.param(
        '[[servers]]\nname = "main"\ncommand = "x"\n'
        '[[servers]]\nname = "backup"\ncommand = "y"\nfailover_for = "mian"\n',
        ["servers[1] (backup)", "failover_for", "'mian'", "names no server"],
        id="failover-for-naming-no-server",
    ),
    pytest.param(
        '[[servers]]\nname = "loop"\ncommand = "x"\nfailover_for = "loop"\n',
        ["servers[0] (loop)", "`failover_for` names the server itself"],
        id="failover-for-naming-itself",
    ),
    # replicas of one server
    pytest.param(
        '[[servers]]\nname = "s"\ncommand = "x"\nprefix = "one"\n'
        '[[servers]]\nname = "s"\ncommand = "y"\nprefix = "two"\n',
        ["replicas of 's' disagree on `prefix`", "'one'", "'two'"],
        id="replicas-disagreeing-on-prefix",
    ),
    pytest.param(
        '[[servers]]\nname = "main"\ncommand = "x"\n'
        '[[servers]]\nname = "b"\ncommand = "y"\nfailover_for = "main"\n'
        '[[servers]]\nname = "b"\ncommand = "z"\n',
        ["replicas of 'b' disagree on `failover_for`"],
        id="replicas-disagreeing-on-failover-for",
    ),
    pytest.param(
        '[[servers]]\nname = "a"\nid = "same"\ncommand = "x"\n'
        '[[servers]]\nname = "b"\nid = "same"\ncommand = "y"\n',
        ["two replicas have the id 'same'"],
        id="duplicate-explicit-ids",
    ),
    pytest.param(
        '[[servers]]\nname = "a"\ncommand = "x"\nreplicas = 2\n'
        '[[servers]]\nname = "b"\nid = "a-2"\ncommand = "y"\n',
        ["two replicas have the id 'a-2'"],
        id="explicit-id-colliding-with-a-generated-one",
    ),
    # TOML itself
    pytest.param(
        '[[servers]]\nname = "a\ncommand = "x"\n',
        ["invalid TOML", "line 2"],
        id="invalid-toml-syntax",
    ),
    # [gateway] allowed_hosts
    pytest.param(
        '[gateway]\nallowed_hosts = ["http://mcp.example.com"]\n',
        ["gateway.allowed_hosts[0]: ", "a Host has no scheme"],
        id="host-with-a-scheme",
    ),
    pytest.param(
        '[gateway]\nallowed_hosts = ["ok:*", "::1"]\n',
        ["gateway.allowed_hosts[1]: ", "write IPv6 addresses in brackets"],
        id="host-ipv6-without-brackets",
    ),
    pytest.param(
        '[gateway]\nallowed_hosts = ["*.example.com"]\n',
        ["gateway.allowed_hosts[0]: ", "'*' may only stand for the whole port"],
        id="host-wildcard-in-the-name",
    ),
    pytest.param(
        '[gateway]\nallowed_hosts = ["*"]\n',
        ["gateway.allowed_hosts[0]: ", "'*' may only stand for the whole port"],
        id="host-wildcard-alone",
    ),
    pytest.param(
        '[gateway]\nallowed_hosts = ["example.com:99999"]\n',
        ["gateway.allowed_hosts[0]: ", "port out of range"],
        id="host-port-out-of-range",
    ),
    pytest.param(
        '[gateway]\nallowed_hosts = ["a b"]\n',
        ["gateway.allowed_hosts[0]: ", "not a host pattern: 'a b'"],
        id="host-not-a-pattern",
    ),
    pytest.param(
        '[gateway]\nallowed_hosts = "localhost:*"\n',
        ["gateway.allowed_hosts: ", "valid list"],
        id="hosts-not-a-list",
    ),
    pytest.param(
        "[gateway]\nallowed_hosts = []\n",
        ["gateway.allowed_hosts: ", "lists no host, so every request would be refused"],
        id="hosts-empty",
    ),
    # [gateway] allowed_origins
    pytest.param(
        '[gateway]\nallowed_origins = ["app.example.com"]\n',
        ["gateway.allowed_origins[0]: ", "an origin has a scheme"],
        id="origin-without-a-scheme",
    ),
    pytest.param(
        '[gateway]\nallowed_origins = ["https://ok", "https://app.example.com/"]\n',
        ["gateway.allowed_origins[1]: ", "has no path"],
        id="origin-with-a-slash",
    ),
    pytest.param(
        '[gateway]\nallowed_origins = ["https://app.example.com/mcp"]\n',
        ["gateway.allowed_origins[0]: ", "has no path"],
        id="origin-with-a-path",
    ),
    pytest.param(
        '[gateway]\nallowed_origins = ["https://*.example.com"]\n',
        ["gateway.allowed_origins[0]: ", "'*' may only stand for the whole"],
        id="origin-wildcard-in-the-name",
    ),
    pytest.param(
        '[gateway]\nallowed_origins = ["http://localhost:0"]\n',
        ["gateway.allowed_origins[0]: ", "port out of range"],
        id="origin-port-out-of-range",
    ),
    pytest.param(
        "[gateway]\nallowed_origins = [1]\n",
        ["gateway.allowed_origins[0]: ", "valid string"],
        id="origin-not-a-string",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CONFIG_ERRORS)
def test_config_error_names_the_field_and_the_problem(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    message = config_error(tmp_path, text)  # which also checks it names the file
    for fragment in expected:
        assert fragment in message, message


def test_replicas_agree_when_prefix_equals_default(tmp_path: Path) -> None:
    text = (
        '[[servers]]\nname = "s"\ncommand = "x"\nprefix = "s"\n'
        '[[servers]]\nname = "s"\ncommand = "y"\n'
    )
    assert len(load_text(tmp_path, text).replica_specs()) == 2


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as exc_info:
        load_config(path, environ={})
    message = str(exc_info.value)
    assert str(path) in message
    assert "cannot read" in message
    assert exc_info.value.source == str(path)


def test_config_from_raw_without_source_has_no_file_prefix() -> None:
    with pytest.raises(ConfigError) as exc_info:
        config_from_raw({"foo": 1}, None, {})
    assert str(exc_info.value) == "foo: unknown key"
    assert exc_info.value.source is None


# ---------------------------------------------------------------------------- find_config


def test_find_config_explicit_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write(tmp_path, "", "explicit.toml")
    from_env = write(tmp_path, "", "env.toml")
    write(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MCP_AGG_CONFIG", str(from_env))
    assert find_config(explicit) == explicit.resolve()


def test_find_config_env_var_wins_over_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = write(tmp_path, "", "env.toml")
    write(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MCP_AGG_CONFIG", str(from_env))
    assert find_config() == from_env.resolve()


def test_find_config_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = write(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MCP_AGG_CONFIG", raising=False)
    found = find_config()
    assert found == local.resolve()
    assert found.is_absolute()


def test_find_config_relative_explicit_path_is_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    target = write(tmp_path / "sub", "", "x.toml")
    monkeypatch.chdir(tmp_path)
    assert find_config(Path("sub/x.toml")) == target.resolve()


def test_find_config_missing_explicit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_AGG_CONFIG", str(write(tmp_path, "", "env.toml")))
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as exc_info:
        find_config(missing)
    message = str(exc_info.value)
    assert str(missing) in message
    assert "--config" in message
    assert "no config file" in message


def test_find_config_missing_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "from-env.toml"
    monkeypatch.setenv("MCP_AGG_CONFIG", str(missing))
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "")  # ./servers.toml exists but the env var names another file
    with pytest.raises(ConfigError) as exc_info:
        find_config()
    message = str(exc_info.value)
    assert str(missing) in message
    assert "MCP_AGG_CONFIG" in message


def test_find_config_missing_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MCP_AGG_CONFIG", raising=False)
    with pytest.raises(ConfigError) as exc_info:
        find_config()
    message = str(exc_info.value)
    assert "servers.toml" in message
    assert "current folder" in message


def test_find_config_empty_env_var_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = write(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MCP_AGG_CONFIG", "")
    assert find_config() == local.resolve()


def test_find_config_directory_is_not_a_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="no config file"):
        find_config(tmp_path)


# ---------------------------------------------------------------------------- mcpServers JSON

MCP_SERVERS: dict[str, Any] = {
    "mcpServers": {
        "local": {
            "command": "python",
            "args": ["server.py", "--token", "${API_TOKEN}"],
            "env": {"KEY": "${API_KEY:-none}"},
            "cwd": "work",
        },
        "typed-stdio": {"type": "stdio", "command": "node", "args": ["x.js"]},
        "remote": {
            "type": "http",
            "url": "https://example.com/mcp",
            "headers": {"Authorization": "Bearer ${REMOTE_TOKEN}"},
        },
        "streamy": {"type": "streamable-http", "url": "http://127.0.0.1:9000/mcp"},
        "untyped-url": {"url": "http://127.0.0.1:9001/mcp"},
        "events": {"type": "sse", "url": "http://127.0.0.1:9002/sse"},
        "legacy": {"transport": "SSE", "url": "http://127.0.0.1:9003/sse"},
        "off": {"command": "uvx", "args": ["thing"], "disabled": True},
        "on": {"command": "uvx", "disabled": False},
    }
}
JSON_ENV = {"API_TOKEN": "tok", "REMOTE_TOKEN": "rt"}


def write_json(tmp_path: Path, data: Any, name: str = "mcp.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_json_loads_into_server_configs(tmp_path: Path) -> None:
    path = write_json(tmp_path, MCP_SERVERS)
    config = load_config(path, environ=JSON_ENV)
    by_name = {s.name: s for s in config.servers}
    assert list(by_name) == list(MCP_SERVERS["mcpServers"])
    assert config.source == path

    local = by_name["local"]
    assert local.kind == "stdio"
    assert local.command == "python"
    assert local.args == ["server.py", "--token", "tok"]
    assert local.env == {"KEY": "none"}
    assert local.cwd == "work"

    assert by_name["typed-stdio"].kind == "stdio"
    assert by_name["typed-stdio"].transport is None

    remote = by_name["remote"]
    assert remote.kind == "http"
    assert remote.transport == "http"
    assert remote.url == "https://example.com/mcp"
    assert remote.headers == {"Authorization": "Bearer rt"}

    assert by_name["streamy"].kind == "http"
    assert by_name["streamy"].transport == "http"
    assert by_name["untyped-url"].kind == "http"
    assert by_name["events"].kind == "sse"
    assert by_name["legacy"].kind == "sse"

    assert by_name["off"].enabled is False
    assert by_name["on"].enabled is True
    assert all(s.enabled for n, s in by_name.items() if n != "off")

    specs = config.replica_specs()
    assert "off" not in {s.group for s in specs}
    assert {s.id for s in specs} == {f"{n}-1" for n in by_name if n != "off"}
    local_spec = next(s for s in specs if s.group == "local")
    assert local_spec.command == sys.executable
    assert local_spec.cwd == (tmp_path / "work").resolve()


def test_json_unknown_key_in_entry(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"mcpServers": {"x": {"command": "a", "autoApprove": []}}})
    with pytest.raises(ConfigError) as exc_info:
        load_config(path, environ={})
    message = str(exc_info.value)
    assert str(path) in message
    assert "mcpServers.x.autoApprove" in message
    assert "unknown key" in message


def test_json_unknown_top_level_key_is_ignored_with_a_note(tmp_path: Path) -> None:
    # Claude Desktop's file holds the app's own settings beside mcpServers (issue 14).
    path = write_json(tmp_path, {"mcpServers": {"x": {"command": "a"}}, "globalShortcut": "x"})
    assert [s.name for s in load_config(path, environ={}).servers] == ["x"]
    assert import_mcp_servers(path).notes == ("ignored top-level keys: globalShortcut",)


def test_json_unknown_transport(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"mcpServers": {"x": {"type": "ws", "url": "http://h"}}})
    with pytest.raises(ConfigError) as exc_info:
        load_config(path, environ={})
    message = str(exc_info.value)
    assert str(path) in message
    assert "mcpServers.x.type" in message
    assert "unknown transport 'ws'" in message


@pytest.mark.parametrize("data", [[1, 2], "text", 3, None])
def test_json_top_level_not_an_object(tmp_path: Path, data: Any) -> None:
    path = write_json(tmp_path, data)
    with pytest.raises(ConfigError) as exc_info:
        load_config(path, environ={})
    message = str(exc_info.value)
    assert str(path) in message
    assert "expected a JSON object" in message


@pytest.mark.parametrize("data", [{}, {"mcpServers": []}, {"servers": []}])
def test_json_without_mcp_servers_object(tmp_path: Path, data: Any) -> None:
    path = write_json(tmp_path, data)
    with pytest.raises(ConfigError) as exc_info:
        load_config(path, environ={})
    message = str(exc_info.value)
    assert str(path) in message
    assert '"mcpServers" object' in message


def test_json_entry_not_an_object(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"mcpServers": {"bad": ["python", "x.py"]}})
    with pytest.raises(ConfigError) as exc_info:
        load_config(path, environ={})
    message = str(exc_info.value)
    assert str(path) in message
    assert "mcpServers.bad" in message
    assert "expected an object" in message


def test_json_invalid_syntax(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"mcpServers": {', encoding="utf-8")
    with pytest.raises(ConfigError) as exc_info:
        load_config(path, environ={})
    message = str(exc_info.value)
    assert str(path) in message
    assert "invalid JSON" in message


def test_json_entry_failing_validation_names_the_server(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"mcpServers": {"empty": {}}})
    with pytest.raises(ConfigError) as exc_info:
        load_config(path, environ={})
    message = str(exc_info.value)
    assert str(path) in message
    assert "(empty)" in message
    assert "needs `command`" in message


def test_import_mcp_servers_round_trip(tmp_path: Path) -> None:
    path = write_json(tmp_path, MCP_SERVERS)
    text = import_mcp_servers(path).toml
    raw = tomllib.loads(text)
    # ${VAR} references are kept as written, not expanded.
    assert "${API_TOKEN}" in text
    assert "${API_KEY:-none}" in text
    assert "${REMOTE_TOKEN}" in text
    assert raw["servers"][0]["args"] == ["server.py", "--token", "${API_TOKEN}"]
    assert raw["servers"][0]["env"] == {"KEY": "${API_KEY:-none}"}
    assert raw["gateway"] == {"name": "mcp-agg"}

    toml_path = tmp_path / "servers.toml"
    toml_path.write_text(text, encoding="utf-8")
    from_toml = load_config(toml_path, environ=JSON_ENV)
    from_json = load_config(path, environ=JSON_ENV)
    assert from_toml.servers == from_json.servers
    assert from_toml.gateway == from_json.gateway
    assert [(s.group, s.id, s.command, s.cwd) for s in from_toml.replica_specs()] == [
        (s.group, s.id, s.command, s.cwd) for s in from_json.replica_specs()
    ]


def test_import_mcp_servers_needs_no_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("API_TOKEN", "API_KEY", "REMOTE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    text = import_mcp_servers(write_json(tmp_path, MCP_SERVERS)).toml
    assert "${API_TOKEN}" in text


def test_import_mcp_servers_validates(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"mcpServers": {"x": {"url": "ftp://h"}}})
    with pytest.raises(ConfigError) as exc_info:
        import_mcp_servers(path)
    message = str(exc_info.value)
    assert str(path) in message
    assert "(x).url" in message
    assert "must start with http:// or https://" in message


def test_import_mcp_servers_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError) as exc_info:
        import_mcp_servers(path)
    assert str(path) in str(exc_info.value)
    assert "cannot read" in str(exc_info.value)


def test_server_config_is_frozen() -> None:
    server = ServerConfig(name="a", command="x")
    with pytest.raises(ValueError, match="frozen"):
        server.name = "b"


# ------------------------------------------------- [gateway] allowed_hosts / allowed_origins


def test_allowed_hosts_and_origins_default_to_unset(tmp_path: Path) -> None:
    gw = load_text(tmp_path, "[gateway]\n").gateway
    assert gw.allowed_hosts is None
    assert gw.allowed_origins is None


def test_allowed_hosts_and_origins_are_read(tmp_path: Path) -> None:
    gw = load_text(
        tmp_path,
        "[gateway]\n"
        'allowed_hosts = ["mcp.example.com", "gw.internal:*", "[::1]:8000", "${GW_HOST}:*"]\n'
        'allowed_origins = ["https://app.example.com", "http://localhost:*", "vscode-webview://x"]\n',
        environ={"GW_HOST": "10.0.0.5"},
    ).gateway
    assert gw.allowed_hosts == ["mcp.example.com", "gw.internal:*", "[::1]:8000", "10.0.0.5:*"]
    assert gw.allowed_origins == [
        "https://app.example.com",
        "http://localhost:*",
        "vscode-webview://x",
    ]


def test_empty_allowed_origins_is_valid(tmp_path: Path) -> None:
    """No browser origin at all: requests without Origin still pass."""
    assert load_text(tmp_path, "[gateway]\nallowed_origins = []\n").gateway.allowed_origins == []


# A bad host or origin is a row of CONFIG_ERRORS (error paths).


def test_host_origin_policy_on_a_loopback_bind() -> None:
    policy = HostOriginPolicy.for_bind("127.0.0.1")
    for host in ("127.0.0.1:8000", "localhost:1", "LOCALHOST:1", "[::1]:8000", "localhost"):
        assert policy.host_allowed(host), host
    for host in (None, "", "evil.example.com", "localhost.evil.com:80", "127.0.0.1:80x"):
        assert not policy.host_allowed(host), host
    for origin in (None, "http://localhost:5173", "https://127.0.0.1:1", "http://[::1]"):
        assert policy.origin_allowed(origin), origin
    for origin in ("null", "http://evil.example.com", "http://localhost.evil.com", "file://"):
        assert not policy.origin_allowed(origin), origin


def test_host_origin_policy_on_another_loopback_address() -> None:
    assert HostOriginPolicy.for_bind("127.0.0.2").host_allowed("127.0.0.2:8000")
    assert HostOriginPolicy.for_bind("::1").host_allowed("[::1]:8000")


def test_host_origin_policy_on_a_public_bind_accepts_any_host_but_no_foreign_origin() -> None:
    for bind in ("0.0.0.0", "::", "192.168.1.10", "gateway.example.com"):
        policy = HostOriginPolicy.for_bind(bind)
        assert policy.allowed_hosts is None
        assert policy.host_allowed("evil.example.com")
        assert policy.origin_allowed(None)
        assert policy.origin_allowed("http://localhost:6274")
        assert not policy.origin_allowed("http://evil.example.com")


def test_configured_lists_replace_the_defaults() -> None:
    policy = HostOriginPolicy.for_bind(
        "127.0.0.1", ["mcp.example.com", "gw:*"], ["https://app.example.com"]
    )
    assert policy.host_allowed("mcp.example.com")
    assert policy.host_allowed("gw:9000")
    assert not policy.host_allowed("mcp.example.com:8000")  # an exact pattern has no port
    assert not policy.host_allowed("localhost:8000")
    assert policy.origin_allowed("https://app.example.com")
    assert not policy.origin_allowed("https://app.example.com:8443")
    assert not policy.origin_allowed("http://localhost:8000")
    public = HostOriginPolicy.for_bind("0.0.0.0", ["mcp.example.com"], [])
    assert not public.host_allowed("evil.example.com")
    assert not public.origin_allowed("http://localhost:1")


# ---------------------------------------------------------------------------- profiles

PROFILED = """\
[gateway]
request_timeout = 30
[gateway.retry]
attempts = 2

[[servers]]
name = "github"
url = "https://api.example.com/mcp"
headers = { Authorization = "Bearer x" }

[[servers]]
name = "github"
url = "https://api2.example.com/mcp"

[[servers]]
name = "notes"
command = "notes-server"

[profiles.staging.gateway]
request_timeout = 5
[profiles.staging.gateway.retry]
base_delay = 0.5
[profiles.staging.servers.github]
url = "${STAGING_URL}"

[profiles.quiet.servers.notes]
enabled = false
"""


def test_no_profile_leaves_the_base_config_and_ignores_profiles(tmp_path: Path) -> None:
    # ${STAGING_URL} is unset: a profile not chosen is not expanded.
    config = load_text(tmp_path, PROFILED, environ={})
    assert config.profile is None
    assert config.gateway.request_timeout == 30
    assert [s.url for s in config.servers[:2]] == [
        "https://api.example.com/mcp",
        "https://api2.example.com/mcp",
    ]


def test_profile_overrides_gateway_keys_and_every_replica_of_a_server(tmp_path: Path) -> None:
    path = write(tmp_path, PROFILED)
    config = load_config(
        path, {"STAGING_URL": "https://staging.example.com/mcp"}, profile="staging"
    )
    assert config.profile == "staging"
    assert config.gateway.request_timeout == 5
    # Nested tables merge key by key: attempts stays, base_delay changes.
    assert (config.gateway.retry.attempts, config.gateway.retry.base_delay) == (2, 0.5)
    assert [s.url for s in config.servers[:2]] == ["https://staging.example.com/mcp"] * 2
    assert config.servers[0].headers == {"Authorization": "Bearer x"}  # untouched keys stay
    assert config.servers[2].enabled


def test_profile_from_the_environment(tmp_path: Path) -> None:
    config = load_text(tmp_path, PROFILED, environ={"MCP_AGG_PROFILE": "quiet"})
    assert config.profile == "quiet"
    assert not config.servers[2].enabled
    assert [s.group for s in config.replica_specs()] == ["github", "github"]


def test_unknown_profile_names_the_ones_defined(tmp_path: Path) -> None:
    path = write(tmp_path, PROFILED)
    with pytest.raises(ConfigError, match=r"profile 'prod' is not defined \(quiet, staging\)"):
        load_config(path, {}, profile="prod")


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("[profiles.x.servers.nope]\nurl = 'http://a'", r"profiles\.x\.servers\.nope: names no"),
        ("[profiles.x.servers.notes]\nname = 'other'", r"profiles\.x\.servers\.notes\.name: a"),
        ("[profiles.x]\nfanout = 1", r"profiles\.x\.fanout: unknown key"),
        ("[profiles]\nx = 3", r"profiles\.x: must be a table"),
    ],
)
def test_broken_profiles_are_errors_even_when_not_chosen(
    tmp_path: Path, table: str, problem: str
) -> None:
    base = "[[servers]]\nname = 'notes'\ncommand = 'n'\n"
    with pytest.raises(ConfigError, match=problem):
        load_text(tmp_path, base + table, environ={})


def test_a_profile_value_is_validated_like_the_base(tmp_path: Path) -> None:
    text = PROFILED + "[profiles.bad.gateway]\nrequest_timeout = -1\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"gateway\.request_timeout: Input should be greater"):
        load_config(path, {}, profile="bad")


# ---------------------------------------------------------------------------- [[fanout]]


def test_fanout_entries_parse(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        "[[servers]]\nname = 'search'\ncommand = 's'\nreplicas = 2\n"
        "[[fanout]]\nname = 'everywhere'\ntargets = ['a_q', 'b_q']\nstrategy = 'first-success'\n"
        "[[fanout]]\nname = 'vote'\ngroup = 'search'\ntool = 'query'\n"
        "strategy = 'majority-vote'\ntimeout = 3\n",
    )
    first, second = config.fanout
    assert (first.targets, first.strategy, first.timeout) == (["a_q", "b_q"], "first-success", 20)
    assert (second.group, second.tool, second.strategy) == ("search", "query", "majority-vote")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("name = 'f'", r"fanout\[0\] \(f\): needs either `targets` or `group`"),
        ("name = 'f'\ntargets = ['a']", r"fanout\[0\] \(f\): `targets` needs at least two"),
        ("name = 'f'\ntargets = ['a', 'a']", r"names a tool twice"),
        ("name = 'f'\ngroup = 'notes'", r"`group` needs `tool`"),
        ("name = 'f'\ngroup = 'nope'\ntool = 't'", r"group = 'nope' names no server"),
        ("name = 'f'\ntargets = ['a', 'b']\nstrategy = 'fastest'", r"fanout\[0\] \(f\)\.strategy"),
    ],
)
def test_broken_fanout_entries(tmp_path: Path, entry: str, problem: str) -> None:
    base = "[[servers]]\nname = 'notes'\ncommand = 'n'\n[[fanout]]\n"
    with pytest.raises(ConfigError, match=problem):
        load_text(tmp_path, base + entry)


def test_two_fanouts_with_one_name(tmp_path: Path) -> None:
    entry = "[[fanout]]\nname = 'f'\ntargets = ['a', 'b']\n"
    with pytest.raises(ConfigError, match=r"fanout\[1\] \(f\): two \[\[fanout\]\] tools"):
        load_text(tmp_path, entry * 2)


# ---------------------------------------------------------------------------- backend sessions


def test_backend_sessions_default_to_shared() -> None:
    server = config_from_raw({"servers": [{"name": "a", "command": "x"}]}, None, {}).servers[0]
    assert (server.session, server.session_idle_timeout, server.max_sessions) == ("shared", 300, 64)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('session = "private"', "servers[0] (a).session: Input should be 'shared' or 'per_client'"),
        (
            "session_idle_timeout = 0",
            "servers[0] (a).session_idle_timeout: Input should be greater",
        ),
        ("max_sessions = 0", "servers[0] (a).max_sessions: Input should be greater than or equal"),
        ("max_session = 2", "servers[0] (a).max_session: unknown key"),
    ],
)
def test_backend_session_errors_name_the_field(tmp_path: Path, line: str, expected: str) -> None:
    message = config_error(tmp_path, f'[[servers]]\nname = "a"\ncommand = "x"\n{line}\n')
    assert expected in message, message
