"""What the soak runs: two gateways (one per front) on one generated servers.toml shape,
the backends behind them, and which replica the faults may hit.

Behind each gateway:

- `local`: three replicas of the faulty test backend over stdio (started by the gateway);
- `web`: two replicas of the faulty backend over streamable HTTP, one launched by the
  gateway (`command` + `url`), one run by the soak and shared by both gateways;
- `everything`: the third-party `mcp-server-everything` over streamable HTTP, run by the
  soak, shared by both gateways; its sessions are stateful, so a restart expires them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tests.e2e.procs import BACKENDS, free_port, node_server

from harness import Reaper
from soak_procs import OwnBackend

__all__ = ["FRONTS", "SERVERS", "Replica", "Topology", "build"]

FAULTY = BACKENDS / "faulty.py"
#: Makes a Node server listen on 127.0.0.1 only (server-everything binds every interface).
LOOPBACK = Path(__file__).resolve().parent / "soak_loopback.cjs"
#: The gateways, by the front their clients use.
FRONTS = ("stdio", "http")
SERVERS = ("local", "web", "everything")
LOCAL_REPLICAS = 3

#: Resilience settings of both gateways. A hung replica must be given up for the next
#: one (attempt_timeout) well within the deadline; health checks and breakers are quick,
#: so a replica that is back rejoins within seconds.
GATEWAY = """[gateway]
connect_timeout = 60
request_timeout = 15
health_interval = 2
unhealthy_threshold = 2
healthy_threshold = 2

[gateway.retry]
attempts = 3
base_delay = 0.05
max_delay = 0.5
attempt_timeout = 4

[gateway.breaker]
reset_timeout = 5
"""


@dataclass(frozen=True, slots=True)
class Replica:
    """One replica a fault can hit.

    `owner` is who starts it again after a kill: the gateway (stdio, launched HTTP) or the
    soak (its own HTTP backends). `mode_file` is set for the faulty backend (slow, junk).
    """

    tag: str
    server: str
    fronts: tuple[str, ...]
    owner: str
    stdio: bool
    mode_file: Path | None = None

    @property
    def match(self) -> str:
        """What its command line holds, to find its process (the faulty backend's)."""
        return f"--replica {self.tag} "


@dataclass(slots=True)
class Topology:
    replicas: list[Replica]
    own: dict[str, OwnBackend]
    configs: dict[str, Path]
    counts: Path

    def replicas_of(self, front: str, server: str) -> list[Replica]:
        return [r for r in self.replicas if r.server == server and front in r.fronts]

    def by_tag(self, tag: str) -> Replica:
        return next(r for r in self.replicas if r.tag == tag)


def _faulty_args(tag: str, workdir: Path, counts: Path) -> list[str]:
    mode = workdir / f"{tag}.mode"
    return [str(FAULTY), "--replica", tag, "--count-file", str(counts), "--mode-file", str(mode)]


def _entry(**lines: object) -> str:
    """One `[[servers]]` table; JSON strings and arrays are valid TOML."""
    body = "\n".join(f"{key} = {json.dumps(value)}" for key, value in lines.items())
    return f"\n[[servers]]\n{body}\n"


def _config(front: str, workdir: Path, counts: Path, own: dict[str, OwnBackend]) -> str:
    safe = ["echo"]  # the faulty backend's echo has no hints: the operator says it is safe
    parts = [GATEWAY]
    for index in range(1, LOCAL_REPLICAS + 1):
        args = _faulty_args(f"{front}-local-{index}", workdir, counts)
        parts.append(
            _entry(name="local", id=f"local-{index}", command="python", args=args,
                   idempotent_tools=safe)
        )  # fmt: skip
    port = free_port()
    args = [*_faulty_args(f"{front}-web-1", workdir, counts), "--transport", "http"]
    url = f"http://127.0.0.1:{port}/mcp"
    parts.append(
        _entry(name="web", id="web-1", command="python", args=[*args, "--port", str(port)],
               url=url, idempotent_tools=safe)
    )  # fmt: skip
    parts.append(_entry(name="web", id="web-2", url=own["web-2"].url, idempotent_tools=safe))
    # Its get-sum claims to be idempotent: the operator's override makes it a tool that
    # is never repeated, so `everything` has a non-idempotent tool too.
    everything = own["everything"].url
    parts.append(_entry(name="everything", url=everything, non_idempotent_tools=["get-sum"]))
    return "".join(parts)


def _replicas(workdir: Path) -> list[Replica]:
    found = []
    for front in FRONTS:
        for index in range(1, LOCAL_REPLICAS + 1):
            tag = f"{front}-local-{index}"
            mode = workdir / f"{tag}.mode"
            found.append(Replica(tag, "local", (front,), "gateway", True, mode))
        tag = f"{front}-web-1"
        found.append(Replica(tag, "web", (front,), "gateway", False, workdir / f"{tag}.mode"))
    found.append(Replica("web-2", "web", FRONTS, "soak", False, workdir / "web-2.mode"))
    found.append(Replica("everything", "everything", FRONTS, "soak", False))
    return found


def build(workdir: Path, log: TextIO, reaper: Reaper) -> Topology:
    """The soak's backends (not started yet) and one config per gateway."""
    counts = workdir / "counts.log"
    web_port, everything_port = free_port(), free_port()
    web_args = [*_faulty_args("web-2", workdir, counts), "--transport", "http"]
    web = OwnBackend(
        "web-2", [sys.executable, *web_args, "--port", str(web_port)], web_port, log, reaper
    )
    argv = node_server("mcp-server-everything", "streamableHttp")
    env = {"PORT": str(everything_port), "NODE_OPTIONS": f'--require "{LOOPBACK}"'}
    everything = OwnBackend("everything", argv, everything_port, log, reaper, env)
    own = {"web-2": web, "everything": everything}
    configs = {}
    for front in FRONTS:
        path = workdir / f"servers-{front}.toml"
        path.write_text(_config(front, workdir, counts, own))
        configs[front] = path
    return Topology(_replicas(workdir), own, configs, counts)
