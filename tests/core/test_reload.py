"""Tests for hot reload: the config diff, the running config with registrations, the
file watcher, and `Gateway.reconfigure` on backends that cannot be reached (no process
is started but the gateway's reaper)."""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from mcp_agg.config import Config, ServerConfig, config_from_raw, load_config
from mcp_agg.core.gateway import Gateway
from mcp_agg.core.reload import (
    ReloadReport,
    compose,
    diff,
    keep_restart_settings,
    reload_from_file,
    watch_config,
)
from mcp_agg.errors import ConfigError, ReloadError
from tests.e2e.procs import free_port

BASE = """
[[servers]]
name = "alpha"
command = "python"
args = ["alpha.py"]

[[servers]]
name = "beta"
command = "python"
args = ["beta.py"]
timeout = 5
balancer = "random"
retry = { attempts = 2 }

[[servers]]
name = "gamma"
url = "http://127.0.0.1:9/mcp"
"""


def parse(text: str) -> Config:
    return config_from_raw(tomllib.loads(text), None, {})


def test_the_same_config_changes_nothing() -> None:
    report = diff(parse(BASE), parse(BASE))
    assert report == ReloadReport(unchanged=("alpha", "beta", "gamma"))
    assert not report.servers_changed


def test_servers_added_removed_and_changed_by_name() -> None:
    new = parse(
        BASE.replace('args = ["alpha.py"]', 'args = ["alpha.py", "--verbose"]').replace(
            'name = "gamma"', 'name = "delta"'
        )
    )
    report = diff(parse(BASE), new)
    assert report.added == ("delta",)
    assert report.removed == ("gamma",)
    assert report.changed == ("alpha",)
    assert report.unchanged == ("beta",)
    assert report.summary() == "added delta; removed gamma; changed alpha; 1 unchanged"


def test_replica_count_and_enabled_count_as_changes() -> None:
    more = parse(BASE.replace('args = ["alpha.py"]', 'args = ["alpha.py"]\nreplicas = 2'))
    assert diff(parse(BASE), more).changed == ("alpha",)
    disabled = parse(
        BASE.replace('url = "http://127.0.0.1:9/mcp"', 'url = "http://x/mcp"\nenabled = false')
    )
    assert diff(parse(BASE), disabled).removed == ("gamma",)


@pytest.mark.parametrize(
    ("gateway", "changed"),
    [
        # beta sets its own timeout: only the others inherit request_timeout.
        ("request_timeout = 7", ("alpha", "gamma")),
        # beta sets its own balancer.
        ('balancer = "least-connections"', ("alpha", "gamma")),
        # beta overrides only `attempts`: the rest of its retry policy is inherited.
        ("retry = { base_delay = 1.0 }", ("alpha", "beta", "gamma")),
        ("retry = { attempts = 5 }", ("alpha", "gamma")),
        ("breaker = { failure_threshold = 9 }", ("alpha", "beta", "gamma")),
        ("health_interval = 3", ("alpha", "beta", "gamma")),
        ("connect_timeout = 3", ("alpha", "beta", "gamma")),
        # Settings of the catalog or of calls: no server is restarted for them.
        ('separator = "."', ()),
        ("max_result_bytes = 1000", ()),
        ("rate_limit = { requests_per_second = 1, burst = 1 }", ()),
    ],
)
def test_inherited_gateway_defaults_change_the_servers_that_inherit_them(
    gateway: str, changed: tuple[str, ...]
) -> None:
    report = diff(parse(BASE), parse(f"[gateway]\n{gateway}\n{BASE}"))
    assert report.changed == changed
    assert report.added == report.removed == ()
    assert report.restart_needed == ()


def test_settings_fixed_while_running_need_a_restart() -> None:
    old = parse(BASE)
    new = parse(
        f"""
[gateway]
name = "renamed"
allowed_origins = ["https://example.com"]
rate_limit = {{ requests_per_second = 1, burst = 1 }}
[gateway.admin]
token = "0123456789abcdef0123"
[gateway.auth]
type = "bearer"
tokens = [{{ token = "secret-token-1", client_id = "a" }}]
{BASE}"""
    )
    report = diff(old, new)
    assert report.restart_needed == (
        "gateway.name",
        "gateway.auth",
        "gateway.allowed_origins",
        "gateway.admin",
    )
    assert not report.servers_changed
    kept = keep_restart_settings(old, new)
    assert kept.gateway.name == "mcp-agg"
    assert kept.gateway.auth is None
    assert kept.gateway.admin is None
    assert kept.gateway.allowed_origins is None
    assert kept.gateway.rate_limit == new.gateway.rate_limit  # follows the new config
    assert kept.servers == new.servers


def test_compose_adds_registrations_and_the_file_wins_a_name() -> None:
    file = parse(BASE)
    extra = ServerConfig(name="extra", url="http://127.0.0.1:9/mcp")
    alpha = ServerConfig(name="alpha", url="http://127.0.0.1:9/mcp")
    running, shadowed = compose(file, {"extra": (extra,), "alpha": (alpha,)})
    assert [s.name for s in running.servers] == ["alpha", "beta", "gamma", "extra"]
    assert running.servers[0].command == "python"  # the file's alpha, not the registration
    assert shadowed == ("alpha",)
    assert compose(file, {}) == (file, ())


def test_compose_validates_the_whole_config() -> None:
    standby = ServerConfig(name="standby", url="http://127.0.0.1:9/mcp", failover_for="nowhere")
    with pytest.raises(ConfigError, match=r"failover_for = 'nowhere' names no server"):
        compose(parse(BASE), {"standby": (standby,)})
    twin = ServerConfig(name="other", id="alpha-1", url="http://127.0.0.1:9/mcp")
    with pytest.raises(ConfigError, match="two replicas have the id 'alpha-1'"):
        compose(parse(BASE), {"other": (twin,)})


async def test_watch_sees_a_file_replaced_by_rename(tmp_path: Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_text(BASE)
    seen = anyio.Event()

    async def changed() -> None:
        seen.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_config, path, changed)
        await anyio.lowlevel.checkpoint()  # the watcher has taken its first look
        replacement = tmp_path / "servers.toml.new"
        replacement.write_text(BASE + "\n# edited\n")
        os.replace(replacement, path)  # what editors that save atomically do
        with anyio.fail_after(10):
            await seen.wait()
        tg.cancel_scope.cancel()


# ---------------------------------------------------------------------------- reconfigure


def unreachable(name: str, port: int, extra: str = "") -> str:
    return f'[[servers]]\nname = "{name}"\nurl = "http://127.0.0.1:{port}/mcp"\n{extra}\n'


@pytest.fixture
def port() -> int:
    return free_port()  # nothing listens there: replicas fail to connect at once


def write(path: Path, text: str) -> Config:
    path.write_text(f"[gateway]\nconnect_timeout = 2\nrequest_timeout = 2\n{text}")
    return load_config(path)


async def test_reconfigure_starts_replaces_and_stops_only_what_changed(
    tmp_path: Path, port: int
) -> None:
    path = tmp_path / "servers.toml"
    gateway = Gateway(write(path, unreachable("a", port) + unreachable("b", port)))
    async with gateway.running():
        a, b = gateway.groups["a"], gateway.groups["b"]
        new = write(
            path,
            unreachable("a", port)
            + unreachable("b", port, "weight = 2")
            + unreachable("c", port)
            + unreachable("standby", port, 'failover_for = "a"'),
        )
        report = await gateway.reconfigurer.reconfigure(new)
        assert report.added == ("c", "standby")
        assert report.changed == ("b",)
        assert report.unchanged == ("a",)
        assert list(gateway.groups) == ["a", "b", "c", "standby"]
        assert gateway.groups["a"] is a  # untouched, sessions and all
        assert gateway.groups["b"] is not b
        assert gateway.groups["a"].failovers == [gateway.groups["standby"]]
        assert all(r.stopped.is_set() for r in b.replicas)  # the old b is reaped
        assert all(r.first_attempt.is_set() for r in gateway.groups["c"].replicas)
        assert gateway.config is new  # nothing to keep from the old one, no registrations

        report = await gateway.reconfigurer.reconfigure(write(path, unreachable("c", port)))
        assert report.removed == ("a", "b", "standby")
        assert list(gateway.groups) == ["c"]
        assert all(r.stopped.is_set() for r in a.replicas)
        assert [u.group for u in gateway.upstreams] == ["c"]


async def test_reconfigure_switches_gateway_settings_and_keeps_fixed_ones(
    tmp_path: Path, port: int
) -> None:
    path = tmp_path / "servers.toml"
    gateway = Gateway(write(path, unreachable("a", port)))
    async with gateway.running():
        limits = gateway.limits
        new = write(
            path,
            'name = "renamed"\nmax_result_bytes = 100\n' + unreachable("a", port),
        )
        report = await gateway.reconfigurer.reconfigure(new)
        assert report.restart_needed == ("gateway.name",)
        assert gateway.config.gateway.name == "mcp-agg"
        assert gateway.config.gateway.max_result_bytes == 100
        assert gateway.limits is not limits
        assert gateway.limits.max_result_bytes == 100


async def test_registrations_survive_a_reload_until_the_file_defines_them(
    tmp_path: Path, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "servers.toml"
    gateway = Gateway(write(path, unreachable("a", port)))
    async with gateway.running():
        report = await gateway.reconfigurer.register(
            ServerConfig(name="r", url=f"http://127.0.0.1:{port}/mcp")
        )
        assert report.added == ("r",)
        assert "r" in gateway.reconfigurer.registered
        assert gateway.config.source == path.resolve()  # what a reload reads again
        with pytest.raises(ReloadError, match="already configured"):
            await gateway.reconfigurer.register(
                ServerConfig(name="a", url="http://127.0.0.1:9/mcp")
            )

        await gateway.reconfigurer.reconfigure(
            write(path, unreachable("a", port) + unreachable("b", port))
        )
        assert list(gateway.groups) == ["a", "b", "r"]

        with caplog.at_level(logging.WARNING):
            report = await gateway.reconfigurer.reconfigure(
                write(path, unreachable("a", port) + unreachable("r", port, "weight = 3"))
            )
        assert "r" not in gateway.reconfigurer.registered
        assert report.changed == ("r",)
        assert gateway.groups["r"].server.weight == 3
        assert "registered at runtime is dropped" in caplog.text

        with pytest.raises(ReloadError, match="no server named 'r' was registered"):
            await gateway.reconfigurer.unregister("r")


async def test_an_invalid_file_is_reported_and_the_running_config_kept(
    tmp_path: Path, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "servers.toml"
    gateway = Gateway(write(path, unreachable("a", port)))
    async with gateway.running():
        running = gateway.config
        path.write_text(unreachable("a", port).replace("http://", "ftp://"))
        with caplog.at_level(logging.ERROR):
            await reload_from_file(gateway.reconfigurer)
        assert "servers[0] (a).url: must start with http:// or https://" in caplog.text
        assert "keeping the running config" in caplog.text
        assert gateway.config is running


async def test_reconfigure_needs_a_running_gateway(tmp_path: Path, port: int) -> None:
    config = write(tmp_path / "servers.toml", unreachable("a", port))
    with pytest.raises(ReloadError, match="not running"):
        await Gateway(config).reconfigurer.reconfigure(config)
