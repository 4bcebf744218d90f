"""CPU per dialog step, in process: where the webhook benchmark's time goes, step by step.

`python -m bench.steps` feeds the webhook benchmark's stream (bench.stream: the resident
suggestion dialog, 11 updates per resident) straight into the service's real dispatcher, and
measures the process CPU time (`time.process_time`) of each `feed_update`, by step. No HTTP
server and no Bot API server: the bot's calls are answered in process by the benchmark's stub
(bench.stub_api.Stub), after the same JSON serialisation and response parsing as over the
network. What is left is what the service's own code and its libraries cost: the gate and its
Redis scripts, SQL, aiogram's dispatch, the handlers, rendering.

Like bench.webhook it drops and re-creates the PostgreSQL database `bench` and flushes Redis
database 14; SQLite runs in a temporary file. The first pass takes every resident through
the stream once (warm caches, compiled statements, a Person row each); the second is measured.

With `--profile DIR` the measured pass also runs under cProfile, one profile per step, saved
as DIR/<backend>-<step>.pstats (read with `python -m pstats`), and the functions that cost the
most of their own time in `--profile-steps` are printed. Profiling slows every call, Python
code more than C: compare its figures with each other, not with an unprofiled run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import re
import statistics
import tempfile
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Update

from bench.stream import BENCH_GROUP_ID, dialog_steps, render_python
from bench.stub_api import Stub
from bench.webhook import BackendRun, prepare_store
from bot.factory import create_dispatcher
from bot.session import dump_payload, method_payload, reply_body
from storage.db import create_engine, create_sessionmaker
from storage.settings import Settings

FIRST_USER = 7_100_000_000
DATE = 1_764_000_000


class StubSession(BaseSession):
    """Answers every call in process, as bench.stub_api would over HTTP."""

    def __init__(self) -> None:
        super().__init__()
        self.stub = Stub()

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None
    ) -> TelegramType:
        payload = method_payload(bot, method) or {}
        body = dump_payload(payload)  # what would go on the wire
        result = self.stub.result(method.__api_method__.lower(), json.loads(body))
        answer = json.dumps({"ok": True, "result": result}, ensure_ascii=False)
        return self.check_response(bot, method, 200, answer).result  # type: ignore[return-value]

    async def close(self) -> None:
        return None

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        raise NotImplementedError  # the dialog downloads nothing
        yield b""


async def run_backend(backend: str, opts: argparse.Namespace) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        run = BackendRun.on(backend, Path(tmp) / "steps.db", opts)
        await prepare_store(run, opts.pg_admin_url)
        settings = Settings(
            _env_file=None,
            database_url=run.database_url,
            redis_url=run.redis_url,
            max_suggestions_per_day=1000,
        )
        engine = create_engine(run.database_url)
        redis = None
        if run.redis_url:
            from bot.factory import create_redis

            redis = create_redis(run.redis_url)
        bot = Bot("7000000002:bench", session=StubSession())
        dispatcher = create_dispatcher(settings, create_sessionmaker(engine), redis)
        steps = dialog_steps(BENCH_GROUP_ID)
        assert steps is not None
        cpu: dict[str, list[float]] = {step.name: [] for step in steps}
        profiles = {step.name: cProfile.Profile() for step in steps} if opts.profile else {}
        update_id = 0
        try:
            for measured in (False, True):
                for user in range(opts.users):
                    for step in steps:
                        update_id += 1
                        body = render_python(step, update_id, FIRST_USER + user, DATE, "zh-hans")
                        update = Update.model_validate_json(body, context={"bot": bot})
                        profile = profiles.get(step.name) if measured else None
                        started = time.process_time()
                        if profile is not None:
                            profile.enable()
                        try:
                            reply = await dispatcher.feed_update(bot, update)
                            if isinstance(reply, TelegramMethod):  # the webhook's answer body
                                reply_body(bot, reply)
                        finally:
                            if profile is not None:
                                profile.disable()
                        if measured:
                            cpu[step.name].append(time.process_time() - started)
        finally:
            await dispatcher.storage.close()
            await engine.dispose()
        if opts.profile:
            save_profiles(backend, profiles, Path(opts.profile), opts.profile_steps.split(","))
        return cpu


def save_profiles(
    backend: str, profiles: dict[str, cProfile.Profile], out: Path, shown: list[str]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, profile in profiles.items():
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
        profile.dump_stats(out / f"{backend}-{slug}.pstats")
        if name in shown:
            print(f"--- {backend}, {name}: own time, top 25")
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)


def report(backend: str, cpu: dict[str, list[float]]) -> str:
    lines = [
        f"### {backend}",
        "",
        "| step | mean CPU ms | median CPU ms | share of a cycle |",
        "|---|---:|---:|---:|",
    ]
    means = {name: statistics.fmean(values) for name, values in cpu.items()}
    cycle = sum(means.values())
    for name, values in cpu.items():
        lines.append(
            f"| {name} | {means[name] * 1e3:.2f} | {statistics.median(values) * 1e3:.2f} "
            f"| {means[name] / cycle:.0%} |"
        )
    lines.append(f"| **mean per update** | **{cycle / len(means) * 1e3:.2f}** | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--users", type=int, default=300, help="residents in the stream")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--profile", metavar="DIR", help="cProfile each step; save DIR/*.pstats")
    parser.add_argument(
        "--profile-steps", default="confirm", help="steps whose top functions are printed"
    )
    opts = parser.parse_args(argv)
    for backend in opts.backends.split(","):
        cpu = asyncio.run(run_backend(backend, opts))
        print(report(backend, cpu), end="\n\n")


if __name__ == "__main__":
    main()
