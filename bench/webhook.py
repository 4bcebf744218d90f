"""Webhook throughput and latency: the full path against the bare framework, on both backends.

    python -m bench.webhook                       # or: make bench
    python -m bench.webhook --quick               # a smoke run of a few seconds per cell
    python -m bench.webhook --backends sqlite --concurrency 1,40 --duration 20

For each backend (SQLite; PostgreSQL + Redis) it prepares a fresh database (migrated, seeded
with a small district › street › community tree), starts a stub Bot API server, then serves

- the *baseline*: the same Telegram route under the same uvicorn settings, feeding a
  Dispatcher with no middleware and a no-op handler (bench/server.py), and
- the *full* app (`webhook.app.create_app`): secret → de-dup → dispatcher → dialog step →
  store commit, with the bot's replies going to the stub over HTTP,

each in its own single-worker uvicorn process, and drives them with Debian's `wrk`
(bench/webhook.lua) at each concurrency: a warm-up, then the measured run. The stream is the
resident suggestion dialog interleaved over many users (bench/stream.py). Raw results go to
bench/results/ (not committed); the summary table is printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bench import stream

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
LUA_SCRIPT = BENCH_DIR / "webhook.lua"
WEBHOOK_PATH = "/telegram/webhook"

BOT_TOKEN = f"{stream.BOT_ID}:bench-not-a-real-token"
SECRET = "bench-webhook-secret"
ORG_ROWS = (
    ("福田区", "沙头街道", "新沙社区"),
    ("福田区", "沙头街道", "沙头社区"),
    ("福田区", "沙头街道", "天安社区"),
    ("福田区", "福田街道", "岗厦社区"),
)
SERVER_CPU, LOAD_CPU = "0", "1"
PRIME_CONCURRENCY = 10
# CPU (in cores) used by anything but our server, stub and wrk during a cell above which the
# cell is measured again: PostgreSQL and Redis take ~0.1-0.2 of a core at these rates.
NOISY_REST = 0.35
ID_BASE = 10_000_000  # update ids stay positive through the priming rounds
TARGET_THROUGHPUT_RATIO = 0.5
TARGET_P99_RATIO = 2.0


@dataclass
class Cell:
    backend: str
    mode: str  # baseline | full
    concurrency: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors: dict[str, int]
    dead_letters: int = 0
    suggestions: int = 0
    # CPU used during the measured run, as a share of one core: is the server saturated?
    cpu: dict[str, float] = field(default_factory=dict)
    # The server's resident memory when the measured run ended, and its peak so far (MiB):
    # what one worker needs, and whether it grows from cell to cell.
    memory: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


@dataclass
class BackendRun:
    backend: str
    database_url: str
    redis_url: str | None
    community_id: int = 0
    cells: list[Cell] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    bot_api_calls: dict[str, int] = field(default_factory=dict)
    server_log_errors: dict[str, dict[str, int]] = field(default_factory=dict)
    full_requests_sent: int = 0

    @classmethod
    def on(cls, backend: str, sqlite_file: Path, opts: argparse.Namespace) -> BackendRun:
        """A run on SQLite in `sqlite_file` (no Redis), or on --pg-url and --redis-url."""
        if backend == "sqlite":
            return cls(backend, f"sqlite+aiosqlite:///{sqlite_file}", None)
        return cls(backend, opts.pg_url, opts.redis_url)


CellT = TypeVar("CellT", bound=Cell)


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: str | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if cpu is not None else argv


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def background(
    argv: list[str], log_path: Path, ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(ready_url, proc=proc)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def count_log_errors(path: Path) -> dict[str, int]:
    """Tracebacks in a server's log, apart from the ClientDisconnects wrk causes when it
    stops with requests still queued (the route was still reading their bodies)."""
    counts = {"tracebacks": 0, "client_disconnects": 0, "warnings": 0}
    with path.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            if line.startswith("Traceback"):
                counts["tracebacks"] += 1
            elif line.startswith("starlette.requests.ClientDisconnect"):
                counts["client_disconnects"] += 1
            elif " WARNING " in line or line.startswith("WARNING"):
                counts["warnings"] += 1
    counts["tracebacks"] -= counts["client_disconnects"]
    return counts


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included."""
    return stat_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())


def stat_cpu_seconds(stat: str) -> float:
    """User + system CPU time in a process's /proc/<pid>/stat line."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> dict[str, float]:
    """A process's resident memory now (VmRSS) and at its peak so far (VmHWM), in MiB."""
    return status_memory_mib(Path(f"/proc/{pid}/status").read_text())


def status_memory_mib(status: str) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        name: round(int(fields[key].split()[0]) / 1024, 1)  # the kernel counts in kB
        for name, key in (("rss", "VmRSS"), ("peak", "VmHWM"))
    }


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- the store -------------------------------------------------------------------------------


def remove_sqlite(database_url: str) -> None:
    """The SQLite database file of a sqlite+aiosqlite:/// URL, with its journal files."""
    database = database_url.split(":///", 1)[1]
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(database + suffix).unlink(missing_ok=True)


async def prepare_store(run: BackendRun, pg_admin_url: str) -> int:
    """A fresh, migrated database with the org tree and the group whose "Suggest" button the
    stream presses (stream.BENCH_GROUP_ID) bound to the first community; returns that
    community's id."""
    from sqlalchemy.engine import make_url

    url = make_url(run.database_url)
    if url.get_backend_name() == "sqlite":
        remove_sqlite(run.database_url)
    else:
        import asyncpg  # type: ignore[import-untyped]

        admin = await asyncpg.connect(pg_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{url.database}"')
        finally:
            await admin.close()
    if run.redis_url:
        from bot.factory import create_redis

        redis = create_redis(run.redis_url)
        try:
            await redis.flushdb()
        finally:
            await redis.aclose()

    from storage.db import create_engine, create_sessionmaker
    from storage.migrate import upgrade
    from storage.services.chats import bind_chat
    from storage.services.org import OrgRow, find_community, import_rows

    await upgrade(run.database_url)
    engine = create_engine(run.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = [OrgRow(line, *names) for line, names in enumerate(ORG_ROWS, start=2)]
            await import_rows(session, rows)
            community = await find_community(session, ORG_ROWS[0][2])
            assert community is not None
            await bind_chat(
                session,
                stream.BENCH_GROUP_ID,
                community,
                title=community.name,
                chat_type="supergroup",
                bound_by_person_id=None,
            )
            return community.id
    finally:
        await engine.dispose()


TABLES = ("suggestion", "dead_letter", "person", "processed_update", "audit_event")


async def count_rows(database_url: str) -> dict[str, int]:
    from sqlalchemy import text

    from storage.db import create_engine

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return {
                table: int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
                for table in TABLES
            }
    finally:
        await engine.dispose()


# --- load ------------------------------------------------------------------------------------


@dataclass
class Load:
    url: str
    steps_path: Path
    users: int
    threads: int
    cpu: str | None
    log: Path
    start: int = 0  # the stream's next request index, carried from run to run

    def run(self, concurrency: int, seconds: int) -> dict[str, Any]:
        threads = max(1, min(self.threads, concurrency))
        argv = pinned(
            self.cpu,
            [
                "wrk",
                f"-t{threads}",
                f"-c{concurrency}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                str(LUA_SCRIPT),
                self.url,
                "--",
                str(self.steps_path),
                str(self.start),
                str(self.users),
                SECRET,
                str(ID_BASE),
                str(threads),
            ],
        )
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
        with self.log.open("a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        for line in done.stdout.splitlines():
            if line.startswith("BENCH_RESULT "):
                result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
                break
        else:
            raise RuntimeError(f"no BENCH_RESULT in wrk's output:\n{done.stdout}")
        self.start += threads * int(result["consumed_per_thread"])
        return result


def make_cell(backend: str, mode: str, concurrency: int, result: dict[str, Any]) -> Cell:
    duration = result["duration_us"] / 1e6
    errors = {
        key: int(result[key])
        for key in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    }
    cell = Cell(
        backend=backend,
        mode=mode,
        concurrency=concurrency,
        duration_s=round(duration, 3),
        requests=int(result["requests"]),
        rps=round(result["requests"] / duration, 1) if duration else 0.0,
        p50_ms=result["p50_us"] / 1000,
        p90_ms=result["p90_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        max_ms=result["max_us"] / 1000,
        mean_ms=round(result["mean_us"] / 1000, 3),
        errors=errors,
    )
    if cell.requests == 0:
        cell.problems.append("no requests completed")
    for key, value in errors.items():
        if value:
            cell.problems.append(f"{value} {key.replace('_', ' ')}")
    return cell


# --- one backend -----------------------------------------------------------------------------


def server_argv(
    mode: str, port: int, stub_url: str, run: BackendRun, opts: argparse.Namespace
) -> list[str]:
    argv = [sys.executable, "-m", "bench.server", "--mode", mode, "--port", str(port)]
    argv += ["--token", BOT_TOKEN, "--api-base", stub_url, "--secret", SECRET]
    argv += ["--database-url", run.database_url, "--max-suggestions-per-day", "1000"]
    if run.redis_url:
        argv += ["--redis-url", run.redis_url]
    if opts.no_access_log:
        argv.append("--no-access-log")
    return argv


@dataclass
class Servers:
    """The stub Bot API and a server per mode, up (see `serve`); once they have stopped, the
    Bot API calls the stub answered and the errors in the servers' logs."""

    stub: subprocess.Popen[bytes]
    load_cpu: str | None  # the CPU for wrk (and the stub), None if not pinned
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)  # each server's webhook URL
    bot_api_calls: dict[str, int] = field(default_factory=dict)
    log_errors: dict[str, dict[str, int]] = field(default_factory=dict)

    def pids(self, mode: str) -> dict[str, int]:
        return {"server": self.servers[mode].pid, "stub": self.stub.pid}


@contextlib.contextmanager
def serve(run: BackendRun, opts: argparse.Namespace, out: Path) -> Iterator[Servers]:
    """The stub Bot API and a server on `run`'s store for each of opts.modes, pinned unless
    --no-pin, logging to `out`. Both servers stay up, idle in turn, so that each concurrency
    measures the baseline and the full path back to back (a drifting machine then hurts both
    alike)."""
    server_cpu = None if opts.no_pin else SERVER_CPU
    load_cpu = None if opts.no_pin else LOAD_CPU
    stub_port = free_port()
    stub_url = f"http://127.0.0.1:{stub_port}"
    stub_argv = [sys.executable, "-m", "bench.stub_api", "--port", str(stub_port)]
    logs: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        stub = stack.enter_context(
            background(
                pinned(load_cpu, stub_argv), out / f"stub-{run.backend}.log", f"{stub_url}/stats"
            )
        )
        up = Servers(stub, load_cpu)
        for mode in opts.modes:
            port = free_port()
            logs[mode] = out / f"server-{run.backend}-{mode}.log"
            up.urls[mode] = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
            argv = pinned(server_cpu, server_argv(mode, port, stub_url, run, opts))
            up.servers[mode] = stack.enter_context(background(argv, logs[mode], up.urls[mode]))
        yield up
        with urllib.request.urlopen(f"{stub_url}/stats", timeout=5) as answer:
            up.bot_api_calls = json.load(answer)
    for mode, log_path in logs.items():
        up.log_errors[mode] = count_log_errors(log_path)


def sweep(
    up: Servers,
    loads: Mapping[str, Load],
    opts: argparse.Namespace,
    measure: Callable[[Load, str, int, dict[str, int]], CellT],
    describe: Callable[[CellT], str],
    retry_note: str = "disturbed",
) -> list[CellT]:
    """A cell per concurrency and mode, measured with `measure(load, mode, concurrency, pids)`
    and printed with `describe` as it comes."""
    cells = []
    for concurrency in opts.concurrency:
        for mode, load in loads.items():
            pids = up.pids(mode)
            tries = [measure(load, mode, concurrency, pids)]
            # Something else used the machine meanwhile: measure again, keep the quietest.
            while tries[-1].cpu["rest"] > NOISY_REST and len(tries) <= opts.retries:
                print(f"   {describe(tries[-1])}  [{retry_note}: measuring again]", flush=True)
                tries.append(measure(load, mode, concurrency, pids))
            cell = min(tries, key=lambda c: c.cpu["rest"])
            cells.append(cell)
            print(f"   {describe(cell)}", flush=True)
    return cells


def run_backend(run: BackendRun, opts: argparse.Namespace, out: Path) -> None:
    print(f"\n== {run.backend}: preparing {run.database_url}", flush=True)
    run.community_id = asyncio.run(prepare_store(run, opts.pg_admin_url))
    steps = stream.dialog_steps(stream.BENCH_GROUP_ID) if opts.stream == "dialog" else None
    steps = steps or stream.simple_steps()
    run.steps = [step.name for step in steps]
    steps_path = stream.write_lua(steps, out / f"steps-{run.backend}.lua")
    print(f"   community id {run.community_id}; {len(steps)} steps: {', '.join(run.steps)}")

    def measure_cell(load: Load, mode: str, concurrency: int, pids: dict[str, int]) -> Cell:
        return measure(run, load, mode, concurrency, opts, pids, out)

    with serve(run, opts, out) as up:
        loads = {
            mode: Load(
                url=url,
                steps_path=steps_path,
                users=opts.users,
                threads=opts.threads,
                cpu=up.load_cpu,
                log=out / f"wrk-{run.backend}.log",
                # The full path enters through the priming rounds (see webhook.lua).
                start=-(len(steps) - 1) * opts.users if mode == "full" else 0,
            )
            for mode, url in up.urls.items()
        }
        if "full" in loads:
            prime(loads["full"], PRIME_CONCURRENCY, opts.warmup)
        run.cells += sweep(up, loads, opts, measure_cell, describe)
    if "full" in loads:
        run.full_requests_sent = loads["full"].start
    run.bot_api_calls = up.bot_api_calls
    run.server_log_errors = up.log_errors
    run.totals = asyncio.run(count_rows(run.database_url))


def prime(load: Load, concurrency: int, seconds: int) -> None:
    """Run the priming rounds (every user's first steps up to where its slot enters)."""
    began = time.monotonic()
    while load.start < 0:
        load.run(concurrency, max(1, seconds))
        if time.monotonic() - began > 600:
            raise RuntimeError("priming took over 10 minutes")
    print(f"   primed in {time.monotonic() - began:.0f} s", flush=True)


# Started just before a measured run, a probe returns what gives, called just after the run,
# the CPU seconds something used meanwhile.
CpuProbe = Callable[[], Callable[[], float]]


def warm_up(load: Load, concurrency: int, opts: argparse.Namespace, pids: dict[str, int]) -> None:
    """A cell's warm-up run, then (if asked) a wait for the machine to be quiet."""
    if opts.warmup:
        load.run(concurrency, opts.warmup)
    if opts.wait_quiet:
        wait_quiet(opts.wait_quiet, set(pids.values()))


def measured_run(
    load: Load,
    backend: str,
    mode: str,
    concurrency: int,
    opts: argparse.Namespace,
    pids: dict[str, int],
    out: Path,
    probes: Mapping[str, CpuProbe] | None = None,
) -> Cell:
    """A cell's measured run (under py-spy if asked), with the CPU used during it, as a share
    of one core: by each of `pids`, by wrk, by each probe, and by the rest of the machine."""
    spy = start_profile(opts, pids["server"], out / f"profile-{backend}-{mode}-c{concurrency}")
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    wrk_before = children_cpu_seconds()
    probing = {name: probe() for name, probe in (probes or {}).items()}
    machine_before = machine_cpu()
    result = load.run(concurrency, opts.duration)
    machine_after = machine_cpu()
    probed = {name: used() for name, used in probing.items()}
    cell = make_cell(backend, mode, concurrency, result)
    seconds = result["duration_us"] / 1e6
    cell.cpu = {
        name: round((cpu_seconds(pid) - cpu_before[name]) / seconds, 2)
        for name, pid in pids.items()
    }
    cell.cpu["wrk"] = round((children_cpu_seconds() - wrk_before) / seconds, 2)
    for name, used_seconds in probed.items():
        cell.cpu[name] = round(used_seconds / seconds, 2)
    # Everything else the machine did meanwhile: PostgreSQL and Redis (part of the system
    # under test on that backend, unless a probe counts them) and whatever else runs here (a
    # noisy neighbour).
    busy = (machine_after - machine_before) / seconds
    cell.cpu["rest"] = round(max(0.0, busy - sum(cell.cpu.values())), 2)
    cell.memory = memory_mib(pids["server"])
    if spy is not None:
        spy.wait()
    return cell


def measure(
    run: BackendRun,
    load: Load,
    mode: str,
    concurrency: int,
    opts: argparse.Namespace,
    pids: dict[str, int],
    out: Path,
) -> Cell:
    warm_up(load, concurrency, opts, pids)
    before = asyncio.run(count_rows(run.database_url)) if mode == "full" else None
    cell = measured_run(load, run.backend, mode, concurrency, opts, pids, out)
    if before is not None:
        time.sleep(0.5)  # let requests still in flight when wrk stopped commit
        after = asyncio.run(count_rows(run.database_url))
        cell.suggestions = after["suggestion"] - before["suggestion"]
        cell.dead_letters = after["dead_letter"] - before["dead_letter"]
        if cell.dead_letters:
            cell.problems.append(f"{cell.dead_letters} updates dead-lettered (handler errors)")
        if opts.stream == "dialog" and cell.suggestions == 0:
            cell.problems.append("no suggestion was stored")
    return cell


def machine_cpu() -> float:
    """CPU seconds all cores have spent busy since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit: float, ours: set[int], threshold: float = 0.25) -> None:
    """Wait (at most `limit` seconds) until the machine is idle apart from our processes:
    other work on 2 cores moves the figures more than anything measured here."""
    deadline = time.monotonic() + limit
    while True:
        before = machine_cpu() - sum(cpu_seconds(pid) for pid in ours)
        time.sleep(1.0)
        busy = machine_cpu() - sum(cpu_seconds(pid) for pid in ours) - before
        if busy < threshold:
            return
        if time.monotonic() > deadline:
            print(f"   (machine still busy: {busy:.2f} cores used by others)", flush=True)
            return


def start_profile(opts: argparse.Namespace, pid: int, path: Path) -> subprocess.Popen[bytes] | None:
    """py-spy (if asked for and installed) on the server for the measured run."""
    if not opts.profile:
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(opts.duration)]
    # Blocking sampling: --nonblocking over-weights frames that sit in system calls. It slows
    # the server a little, so profiled cells read lower than unprofiled ones.
    argv += ["--rate", "100", "--format", "speedscope"]
    argv += ["--output", f"{path}.speedscope.json"]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return spy


def describe(cell: Cell) -> str:
    extra = f", {cell.suggestions} suggestions stored" if cell.mode == "full" else ""
    return cell_line(cell, extra)


def cell_line(cell: Cell, extra: str = "") -> str:
    """A cell on one line of the progress output; `extra` follows its count of requests."""
    flag = "" if cell.valid else f"  INVALID: {'; '.join(cell.problems)}"
    cpu = " ".join(f"{name} {share:.0%}" for name, share in cell.cpu.items())
    memory = f"; rss {cell.memory['rss']:.0f} MiB" if cell.memory else ""
    return (
        f"{cell.mode:8} c={cell.concurrency:<3} {cell.rps:8.1f} upd/s  p50 {cell.p50_ms:7.1f} ms"
        f"  p99 {cell.p99_ms:7.1f} ms  ({cell.requests} requests{extra}; cpu {cpu}{memory}){flag}"
    )


# --- report ----------------------------------------------------------------------------------


def by_concurrency(cells: Sequence[CellT]) -> Iterator[tuple[int, CellT | None, CellT | None]]:
    """(concurrency, baseline cell, full cell) for each concurrency measured, in order."""
    by = {(cell.mode, cell.concurrency): cell for cell in cells}
    for concurrency in sorted({cell.concurrency for cell in cells}):
        yield concurrency, by.get(("baseline", concurrency)), by.get(("full", concurrency))


def num(cell: Cell | None, attr: str) -> str:
    return f"{getattr(cell, attr):,.1f}" if cell else "–"


def share(cell: Cell | None, name: str) -> str:
    return f"{cell.cpu[name]:.0%}" if cell and name in cell.cpu else "–"


def rss(cell: Cell | None) -> str:
    return f"{cell.memory['rss']:.0f}" if cell and cell.memory else "–"


def invalid_note(*cells: Cell | None) -> str:
    return " (INVALID)" if any(cell and not cell.valid for cell in cells) else ""


def table(run: BackendRun) -> str:
    lines = [
        "| concurrency | baseline upd/s | full upd/s | ratio (≥ 0.5) | baseline p99 ms "
        "| full p99 ms | ratio (≤ 2) | baseline p50 ms | full p50 ms | suggestions stored "
        "| server CPU b/f | other CPU b/f | server RSS MiB b/f |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency, base, full in by_concurrency(run.cells):
        rps_ratio = p99_ratio = "–"
        if base and full and base.rps > 0 and base.p99_ms > 0:
            rps = full.rps / base.rps
            p99 = full.p99_ms / base.p99_ms
            rps_ratio = f"{rps:.2f} {'✓' if rps >= TARGET_THROUGHPUT_RATIO else '✗'}"
            p99_ratio = f"{p99:.2f} {'✓' if p99 <= TARGET_P99_RATIO else '✗'}"
        lines.append(
            f"| {concurrency}{invalid_note(base, full)} | {num(base, 'rps')} | {num(full, 'rps')} "
            f"| {rps_ratio} | {num(base, 'p99_ms')} | {num(full, 'p99_ms')} | {p99_ratio} "
            f"| {num(base, 'p50_ms')} | {num(full, 'p50_ms')} "
            f"| {full.suggestions if full else '–'} "
            f"| {share(base, 'server')} / {share(full, 'server')} "
            f"| {share(base, 'rest')} / {share(full, 'rest')} "
            f"| {rss(base)} / {rss(full)} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "bot", "dialogs", "storage", "webhook"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        # The code under test: the commit, and how many of its files were changed on top.
        "commit": head.stdout.strip(),
        "uncommitted_files": len(dirty.stdout.splitlines()),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "",
        "kernel": os.uname().release,
    }


def new_results_dir(prefix: str = "") -> tuple[str, Path]:
    """The run's UTC time stamp, and its new directory bench/results/<prefix><stamp>."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"{prefix}{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    return stamp, out


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that was run, as the report gives it."""
    args = " ".join(argv if argv is not None else sys.argv[1:])
    return f"python -m {module} {args}".strip()


def report_head(
    stamp: str, command: str, where: dict[str, Any], opts: argparse.Namespace
) -> dict[str, Any]:
    """What a benchmark's results.json begins with."""
    return {
        "when": stamp,
        "command": command,
        "machine": where,
        "options": {k: v for k, v in vars(opts).items() if "url" not in k},
        "pinning": None if opts.no_pin else {"server": SERVER_CPU, "wrk+stub": LOAD_CPU},
    }


def run_record(run: Any) -> dict[str, Any]:
    """A run (a dataclass with its `cells`) for results.json, each cell marked valid or not."""
    return {**asdict(run), "cells": [{**asdict(c), "valid": c.valid} for c in run.cells]}


def headline(command: str, stamp: str, where: dict[str, Any], out: Path) -> str:
    return (
        f"\n{command}  ({stamp}; code at {where['commit']} with "
        f"{where['uncommitted_files']} uncommitted files; raw results in {out.relative_to(REPO)})"
    )


def exit_if_invalid(cells: Iterable[Cell]) -> None:
    if any(not cell.valid for cell in cells):
        print("\nSOME CELLS ARE INVALID (see above)")
        raise SystemExit(1)


def add_cell_options(parser: argparse.ArgumentParser, concurrency: str, quick: str) -> None:
    """The options of the wrk benchmarks that come before their own: the cells to measure."""
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per cell")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per cell")
    parser.add_argument("--concurrency", default=concurrency, help="comma-separated")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--modes", default="baseline,full", help="baseline,full")
    parser.add_argument("--quick", action="store_true", help=quick)


def add_run_options(parser: argparse.ArgumentParser, pg_url: str, redis_url: str) -> None:
    """The options of the wrk benchmarks that come after their own: how and where to run."""
    parser.add_argument("--no-pin", action="store_true", help="do not taskset the processes")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the server during measured runs"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120,
        help="before each cell, wait up to this many seconds for other load to stop (0: don't)",
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="re-measure a cell disturbed by other load"
    )
    parser.add_argument("--no-access-log", action="store_true", help="unlike `minsheng serve`")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--pg-url", default=pg_url)
    parser.add_argument("--redis-url", default=redis_url)


def check_options(parser: argparse.ArgumentParser, opts: argparse.Namespace) -> None:
    """The shared options' lists split and checked; no pinning without taskset or 2 CPUs."""
    opts.concurrency = [int(c) for c in str(opts.concurrency).split(",") if c.strip()]
    opts.backends = [b.strip() for b in opts.backends.split(",") if b.strip()]
    opts.modes = [m.strip() for m in opts.modes.split(",") if m.strip()]
    if any(b not in ("sqlite", "postgres") for b in opts.backends):
        parser.error("--backends takes sqlite and/or postgres")
    if any(m not in ("baseline", "full") for m in opts.modes):
        parser.error("--modes takes baseline and/or full")
    if not opts.no_pin and (shutil.which("taskset") is None or (os.cpu_count() or 1) < 2):
        opts.no_pin = True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhook", description=__doc__.split("\n\n")[0]
    )
    add_cell_options(parser, "1,10,40", "3 s cells, 1 s warm-up, 400 users")
    parser.add_argument("--users", type=int, default=2000, help="distinct residents")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--stream", choices=("dialog", "simple"), default="dialog")
    add_run_options(
        parser,
        pg_url="postgresql+asyncpg://postgres@127.0.0.1:5432/bench",
        redis_url="redis://127.0.0.1:6379/14",
    )
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.duration, opts.warmup, opts.users = 3, 1, 400
    check_options(parser, opts)
    if opts.users % opts.threads:
        parser.error("--users must be a multiple of --threads")
    return opts


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    stamp, out = new_results_dir()
    where = machine()  # before the run: the code under test may change while it runs
    runs: list[BackendRun] = []
    for backend in opts.backends:
        run = BackendRun.on(backend, out / "bench.db", opts)
        run_backend(run, opts, out)
        runs.append(run)

    command = command_line("bench.webhook", argv)
    report = {**report_head(stamp, command, where, opts), "runs": [run_record(r) for r in runs]}
    (out / "results.json").write_text(json.dumps(report, ensure_ascii=False, indent=2))
    print(headline(command, stamp, where, out))
    for run in runs:
        sent = run.full_requests_sent
        print(f"\n### {run.backend}\n\n{table(run)}\n")
        print(
            f"rows after the run: {run.totals}; stream index reached {sent}; "
            f"Bot API calls: {sum(run.bot_api_calls.values())} {run.bot_api_calls}; "
            f"server logs: {run.server_log_errors}"
        )
    exit_if_invalid(cell for run in runs for cell in run.cells)


if __name__ == "__main__":
    main()
