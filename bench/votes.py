"""Council votes: poll answers through the full webhook path, and closing a large vote.

    python -m bench.votes                          # both parts, both backends (~10 min)
    python -m bench.votes --quick                  # a smoke run: 3 s cells, 2 closes per case
    python -m bench.votes --backends postgres --concurrency 100 --duration 30 --profile
    python -m bench.votes --skip-stream            # only the close-and-tally timings

**Poll answers.** For each backend (SQLite; PostgreSQL + Redis) a fresh, migrated database is
seeded with a community whose council has 1,000 members (Person rows + COUNCIL_MEMBER grants)
and an open vote on 10 candidates (`council.convene`, closing in 29 days), its 10 polls in the
council's group recorded with `council.record_poll` under poll ids of our own (no poll is sent).
The same two servers as bench.webhook's (bench/server.py: `baseline` = the bare route and
Dispatcher, `full` = `webhook.app.create_app`, same uvicorn settings, same stub Bot API) are
driven by the same wrk script (bench/webhook.lua) with a stream of `poll_answer` updates
(`vote_steps`): 990 members answer, change their answer and retract it, 100 non-members answer
too (kept, never counted), 10 members stay silent so the vote never completes and never closes
early. The vote starts as it stands late in its course, every stream user having answered
every poll once (10,900 ballots, bulk-inserted), so that every cell meets the same tally: each
answer counts the vote's ballots (`council.everyone_voted`), a cost that grows with them.
After every full cell the ballots written during the cell are read back and checked against
what the stream sent (who, which poll, which choice, counted or not), the dead-letter table is
counted and the vote must still be open.

**Close and tally.** In-process, no HTTP: a vote with 10,000 recorded answers (10,000 members x
1 candidate, and 1,000 members x 10 candidates; polls in the council's group, or sent to each
member privately) is closed with `council.close_vote` after its deadline, on a fresh database
each time; the median and spread of several closes are reported, with the SQL statements the
close ran and the time spent in them.

Raw results go to bench/results/votes-<UTC time>/ (not committed); the tables are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench import stream
from bench import webhook as wh

# bench/webhook.lua sends request i as user USER_BASE + (i mod users) (its `user_base`).
USER_BASE = 100_000_000
MEMBERS = 1000
SILENT = 10  # members who never answer: the vote never completes, so it never closes early
OUTSIDERS = 100  # stream users who are not council members (every other one has a Person row)
CANDIDATES = 10
SILENT_BASE = 300_000_000  # the silent members' Telegram ids
STAFF_TID = 90_000_001
PROPOSER_BASE = 80_000_000
POLL_ID_BASE = 5_400_000_000_000_000_000  # poll ids look like Telegram's (numeric strings)
COUNCIL_CHAT = -1_001_500_000_001
COMMUNITY_CHAT = -1_001_500_000_002
VOTE_DAYS = 29  # the vote closes long after the run (rules.MAX_VOTE_DAYS is 30)
CLOSE_SHAPES = {"10000x1": (10_000, 1), "1000x10": (1_000, 10)}


# --- the stream ------------------------------------------------------------------------------


def step_plan(candidates: int = CANDIDATES) -> list[tuple[int, int | None]]:
    """Each user's cycle, as (item position from 0, option id or None for a retraction): a
    pass over every poll, a retraction, a second pass with every answer changed (which also
    re-answers the retracted poll), another retraction. 20 answers, 2 retractions."""
    plan: list[tuple[int, int | None]] = [(j, j % 3) for j in range(candidates)]
    plan.append((candidates - 1, None))
    plan += [(j, (j + 1) % 3) for j in range(candidates)]
    plan.append((candidates // 2 - 1, None))
    return plan


def poll_id(position: int) -> str:
    return str(POLL_ID_BASE + position)


def poll_answer_step(name: str, poll: str, option: int | None) -> stream.Step:
    options = [] if option is None else [option]
    user = {"id": stream.USER, "is_bot": False, "first_name": "议事", "language_code": stream.LANG}
    answer = {
        "poll_id": poll,
        "user": user,
        "option_ids": options,
        "option_persistent_ids": [str(o) for o in options],  # required by aiogram's PollAnswer
    }
    return stream.Step(name, {"update_id": stream.UPDATE_ID, "poll_answer": answer})


def vote_steps(candidates: int = CANDIDATES) -> list[stream.Step]:
    steps = []
    for position, option in step_plan(candidates):
        name = f"retract {position + 1}" if option is None else f"poll {position + 1} → {option}"
        steps.append(poll_answer_step(name, poll_id(position), option))
    return steps


def stream_users() -> int:
    return MEMBERS - SILENT + OUTSIDERS


def is_member_slot(slot: int) -> bool:
    return slot < MEMBERS - SILENT


def request_at(
    index: int, users: int, plan: list[tuple[int, int | None]]
) -> tuple[int, int, int | None]:
    """(Telegram id, item position, option) of request `index`, as bench/webhook.lua builds
    it: slot p = i mod users, round k = i div users, step (k + p) mod len(plan)."""
    rnd, slot = divmod(index, users)
    position, option = plan[(rnd + slot) % len(plan)]
    return USER_BASE + slot, position, option


# --- seeding ---------------------------------------------------------------------------------


@dataclass
class World:
    community_id: int
    vote_id: int
    item_ids: list[int]  # by position
    member_tids: list[int]
    closes_at: datetime
    delivery: str  # group | private
    seconds: float = 0.0


async def seed_world(
    database_url: str,
    community_id: int,
    member_tids: list[int],
    candidates: int,
    *,
    delivery: str = "group",
    persons_only: list[int] | None = None,
    now: datetime | None = None,
) -> World:
    """A council of `member_tids` (bulk-inserted Person rows and COUNCIL_MEMBER grants, as
    people.ensure_person and access.grant_role write them), `candidates` suggestions submitted
    and accepted, a vote convened on them (council.convene) and its polls recorded: one per
    candidate in the council's group (council.record_poll), or one per candidate and member
    (bulk: their council_poll rows only, without the council_poll_send rows record_poll_attempt
    writes, which nothing here reads). The poll sending is marked done, so that the server's
    resume_poll_sending job leaves the vote alone. `persons_only`: people who are not members."""
    from sqlalchemy import insert, select

    from storage.db import create_engine, create_sessionmaker
    from storage.models import ChatPurpose, Community, CouncilPoll, Person, RoleGrant
    from storage.rules import Category, Kind, Role, ScopeLevel
    from storage.services import access, chats, council, screening
    from storage.services.access import Principal, Scope
    from storage.services.council import ConveneRequest
    from storage.services.people import TelegramIdentity, ensure_person
    from storage.services.suggestions import Draft, submit

    began = time.perf_counter()
    now = now or datetime.now(UTC)
    engine = create_engine(database_url)
    try:
        sessions = create_sessionmaker(engine)
        scope = Scope(ScopeLevel.COMMUNITY, community_id)
        async with sessions() as session:
            staff = await ensure_person(session, TelegramIdentity(STAFF_TID, "社区工作人员"))
            await access.grant_role(session, staff.id, Role.COMMUNITY_STAFF, scope)
            people = [
                {
                    "telegram_id": tid,
                    "first_name": f"议事{n}",
                    "language_code": "zh-hans",
                    "created_at": now,
                }
                for n, tid in enumerate(member_tids)
            ]
            people += [
                {
                    "telegram_id": tid,
                    "first_name": "居民",
                    "language_code": "zh-hans",
                    "created_at": now,
                }
                for tid in persons_only or []
            ]
            for chunk in chunks(people, 2000):
                await session.execute(insert(Person), chunk)
            ids = dict(
                (await session.execute(select(Person.telegram_id, Person.id))).tuples().all()
            )
            grants = [
                {
                    "person_id": ids[tid],
                    "role": Role.COUNCIL_MEMBER,
                    "scope_level": ScopeLevel.COMMUNITY,
                    "scope_id": community_id,
                    "granted_by_id": staff.id,
                    "granted_at": now,
                }
                for tid in member_tids
            ]
            for chunk in chunks(grants, 2000):
                await session.execute(insert(RoleGrant), chunk)
            await session.commit()
            community = await session.get(Community, community_id)
            assert community is not None
            if delivery == "group":
                await chats.bind_chat(
                    session,
                    COUNCIL_CHAT,
                    community,
                    title="新沙议事会",
                    chat_type="supergroup",
                    bound_by_person_id=staff.id,
                    purpose=ChatPurpose.COUNCIL,
                )
            await chats.bind_chat(
                session,
                COMMUNITY_CHAT,
                community,
                title="新沙居民群",
                chat_type="supergroup",
                bound_by_person_id=staff.id,
            )
            principal = Principal(Role.COMMUNITY_STAFF, scope, staff.id)
        suggestion_ids = []
        for n in range(candidates):
            async with sessions() as session:
                stored = await submit(
                    session,
                    TelegramIdentity(PROPOSER_BASE + n, f"居民{n}"),
                    Draft(
                        community_id,
                        Category.ENVIRONMENT,
                        f"候选项目{n + 1}：照明",
                        "说明",
                        kind=Kind.PHYSICAL,
                    ),
                    tz=ZoneInfo("UTC"),
                    daily_limit=1000,
                )
                suggestion_ids.append(stored.id)
        async with sessions() as session:
            for suggestion_id in suggestion_ids:
                await screening.accept(session, principal, suggestion_id)
        closes_at = now + timedelta(days=VOTE_DAYS)
        async with sessions() as session:
            request = ConveneRequest(community_id, suggestion_ids, closes_at)
            vote = await council.convene(session, principal, request, now=now)
            vote_id = vote.id
            item_ids = [item.id for item in vote.items]
            assert vote.council_size == len(member_tids), vote.council_size
        async with sessions() as session:
            if delivery == "group":
                for position, item_id in enumerate(item_ids):
                    await council.record_poll(
                        session, item_id, poll_id(position), COUNCIL_CHAT, 1000 + position
                    )
            else:
                polls = [
                    {
                        "poll_id": str(POLL_ID_BASE + position * 1_000_000 + n),
                        "item_id": item_id,
                        "chat_id": tid,
                        "message_id": 1000 + position,
                    }
                    for position, item_id in enumerate(item_ids)
                    for n, tid in enumerate(member_tids)
                ]
                for chunk in chunks(polls, 2000):
                    await session.execute(insert(CouncilPoll), chunk)
                await session.commit()
            await council.finish_poll_sending(session, vote_id, now=now)
    finally:
        await engine.dispose()
    return World(
        community_id,
        vote_id,
        item_ids,
        list(member_tids),
        closes_at,
        delivery,
        seconds=time.perf_counter() - began,
    )


def chunks(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def ballot_choice(member: int, position: int) -> int | None:
    """The seeded answer of member n on item j: 60 % agree, 20 % against, 15 % abstain, 5 %
    retracted (a ballot with no choice); odd items have agree and against swapped, so that
    half the candidates pass and half do not."""
    r = (member * 7 + position * 13) % 20
    option: int | None = 0 if r < 12 else 1 if r < 16 else 2 if r < 19 else None
    if option is not None and option < 2 and position % 2:
        option = 1 - option
    return option


async def seed_ballots(
    database_url: str, world: World, voters: list[int], now: datetime
) -> dict[int, list[int]]:
    """A ballot of each voter on each item (bulk, as record_answer writes them): counted for
    the vote's members, kept as "not_member" for others; the expected (agree, against,
    abstain) per item id."""
    from sqlalchemy import insert, select

    from storage.db import create_engine, create_sessionmaker
    from storage.models import Ballot, Person
    from storage.rules import POLL_CHOICES

    engine = create_engine(database_url)
    expected = {item_id: [0, 0, 0] for item_id in world.item_ids}
    try:
        async with create_sessionmaker(engine)() as session:
            found = await session.execute(select(Person.telegram_id, Person.id))
            ids = dict(found.tuples().all())
            rows = []
            members = set(world.member_tids)
            for position, item_id in enumerate(world.item_ids):
                for n, tid in enumerate(voters):
                    option = ballot_choice(n, position)
                    counted = tid in members
                    if option is not None and counted:
                        expected[item_id][option] += 1
                    rows.append(
                        {
                            "item_id": item_id,
                            "telegram_id": tid,
                            "person_id": ids.get(tid),
                            "choice": POLL_CHOICES[option] if option is not None else None,
                            "counted": counted,
                            "ignored_reason": None if counted else "not_member",
                            "at": now,
                        }
                    )
            for chunk in chunks(rows, 2000):
                await session.execute(insert(Ballot), chunk)
            await session.commit()
        if engine.dialect.name == "postgresql":
            # What autovacuum does once a table has grown (the ballots trickle in over days).
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("ANALYZE")
    finally:
        await engine.dispose()
    return expected


# --- checking what a cell wrote --------------------------------------------------------------


@dataclass
class VoteCell(wh.Cell):
    ballot_rows: int = 0  # Ballot rows after the cell (one per user and poll ever answered)
    ballots_written: int = 0  # rows inserted or updated during the cell
    counted_written: int = 0
    retracted_written: int = 0
    not_member_written: int = 0
    first_index: int = 0
    last_index: int = 0  # the stream's requests [first, last) were sent during the cell


async def vote_state(database_url: str, vote_id: int) -> dict[str, Any]:
    from sqlalchemy import func, select

    from storage.db import create_engine
    from storage.models import Ballot, CouncilVote, CouncilVoteItem, DeadLetter

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            ballots = await conn.scalar(
                select(func.count())
                .select_from(Ballot)
                .join(CouncilVoteItem, CouncilVoteItem.id == Ballot.item_id)
                .where(CouncilVoteItem.vote_id == vote_id)
            )
            dead = await conn.scalar(select(func.count()).select_from(DeadLetter))
            status, closed_at = (
                await conn.execute(
                    select(CouncilVote.status, CouncilVote.closed_at).where(
                        CouncilVote.id == vote_id
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    return {
        "ballots": int(ballots or 0),
        "dead_letters": int(dead or 0),
        "status": str(status),
        "closed_at": closed_at,
    }


async def ballots_since(database_url: str, item_ids: list[int], since: datetime) -> list[Any]:
    from sqlalchemy import select

    from storage.db import create_engine
    from storage.models import Ballot

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(
                    Ballot.item_id,
                    Ballot.telegram_id,
                    Ballot.choice,
                    Ballot.counted,
                    Ballot.ignored_reason,
                ).where(Ballot.item_id.in_(item_ids), Ballot.at >= since)
            )
            return list(rows.all())
    finally:
        await engine.dispose()


def check_ballots(
    cell: VoteCell, world: World, written: list[Any], users: int, in_flight: int
) -> None:
    """The ballots written during the cell against the requests sent: each (user, poll) the
    stream answered holds one of the choices the stream sent it (its last, unless that was
    cut off), counted for members only; nothing else was written; and every answered request
    left its ballot. Up to `in_flight` requests (the concurrency) may have been cut off
    unanswered when wrk stopped, and the first index is never sent: wrk builds one request to
    check the script (script_verify_request, on thread 0's Lua state) and throws it away."""
    from storage.rules import POLL_CHOICES

    plan = step_plan(len(world.item_ids))
    sent: dict[tuple[int, int], list[Any]] = {}
    for index in range(cell.first_index + 1, cell.last_index):
        tid, position, option = request_at(index, users, plan)
        choice = POLL_CHOICES[option] if option is not None else None
        sent.setdefault((world.item_ids[position], tid), []).append(choice)
    found = {(int(r[0]), int(r[1])): r for r in written}
    missing = wrong = miscounted = 0
    for key, choices in sent.items():
        row = found.get(key)
        if row is None:
            missing += 1
            continue
        if row[2] not in choices:
            wrong += 1
        member = is_member_slot(key[1] - USER_BASE)
        if member and (not row[3] or row[4] is not None):
            miscounted += 1
        if not member and (row[3] or row[4] != "not_member"):
            miscounted += 1
    unexpected = len(set(found) - set(sent))
    repeated = sum(len(choices) - 1 for choices in sent.values())
    cell.ballots_written = len(found)
    cell.counted_written = sum(1 for r in written if r[3])
    cell.retracted_written = sum(1 for r in written if r[2] is None)
    cell.not_member_written = sum(1 for r in written if r[4] == "not_member")
    for count, what in (
        (max(0, missing - in_flight), "answers sent but not recorded (beyond those in flight)"),
        (wrong, "ballots with another choice than the stream's"),
        (miscounted, "ballots counted wrongly (member/non-member)"),
        (unexpected, "ballots written that the stream did not send"),
        (max(0, cell.requests - repeated - len(found)), "answered requests without a ballot"),
    ):
        if count:
            cell.problems.append(f"{count} {what}")
    if not found:
        cell.problems.append("no ballot was written")


async def settle(database_url: str, item_ids: list[int], since: datetime) -> list[Any]:
    """The ballots written since `since`, once the server has finished the requests still in
    flight when wrk stopped (SQLite can keep one waiting for its lock for seconds): read
    until two reads half a second apart agree, for at most 20 s."""
    last: list[Any] | None = None
    deadline = time.monotonic() + 20
    while True:
        rows = await ballots_since(database_url, item_ids, since)
        if last is not None and set(map(tuple, rows)) == set(map(tuple, last)):
            return rows
        if time.monotonic() > deadline:
            return rows
        last = rows
        await asyncio.sleep(0.5)


# --- measuring -------------------------------------------------------------------------------

DB_PROCESSES = frozenset({"postgres", "redis-server"})


def db_cpu() -> dict[int, float]:
    """CPU seconds of each PostgreSQL and Redis process (system services, not our children)."""
    found: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.find("(") + 1 : raw.rfind(")")]
        if comm in DB_PROCESSES:
            found[int(entry.name)] = wh.stat_cpu_seconds(raw)
    return found


def db_cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """What they used in between: processes that exited meanwhile (a connection closed) are
    left out, those that started are counted from zero."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def db_probe() -> Callable[[], float]:
    """What PostgreSQL and Redis use during a measured run (a wh.CpuProbe)."""
    before = db_cpu()
    return lambda: db_cpu_used(before, db_cpu())


def measure(
    backend: str,
    world: World,
    database_url: str,
    load: wh.Load,
    mode: str,
    concurrency: int,
    opts: argparse.Namespace,
    pids: dict[str, int],
    out: Path,
) -> VoteCell:
    """As bench.webhook.measure (warm-up, wait for a quiet machine, the measured run, CPU
    shares), with PostgreSQL's and Redis's CPU apart, and the ballots checked."""
    wh.warm_up(load, concurrency, opts, pids)
    full = mode == "full"
    before: dict[str, Any] = {}
    since = datetime.now(UTC)
    if full:
        time.sleep(0.5)  # let the warm-up's last requests commit
        before = asyncio.run(vote_state(database_url, world.vote_id))
        since = datetime.now(UTC)
    first = load.start
    probes = {"db": db_probe}
    measured = wh.measured_run(load, backend, mode, concurrency, opts, pids, out, probes)
    cell = VoteCell(**asdict(measured))
    cell.first_index, cell.last_index = first, load.start
    if full:
        written = asyncio.run(settle(database_url, world.item_ids, since))
        after = asyncio.run(vote_state(database_url, world.vote_id))
        cell.ballot_rows = after["ballots"]
        cell.dead_letters = after["dead_letters"] - before["dead_letters"]
        if cell.dead_letters:
            cell.problems.append(f"{cell.dead_letters} updates dead-lettered (handler errors)")
        if after["status"] != "open" or after["closed_at"] is not None:
            cell.problems.append(f"the vote was closed ({after['status']})")
        check_ballots(cell, world, written, load.users, in_flight=concurrency)
    return cell


def describe(cell: VoteCell) -> str:
    extra = ""
    if cell.mode == "full":
        extra = (
            f", {cell.ballots_written} ballots written ({cell.counted_written} counted, "
            f"{cell.retracted_written} retractions, {cell.not_member_written} non-members), "
            f"{cell.ballot_rows} ballot rows"
        )
    return wh.cell_line(cell, extra)


@dataclass
class StreamRun:
    backend: str
    database_url: str
    redis_url: str | None
    world: dict[str, Any] = field(default_factory=dict)
    cells: list[VoteCell] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    bot_api_calls: dict[str, int] = field(default_factory=dict)
    server_log_errors: dict[str, dict[str, int]] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)


def run_stream(run: StreamRun, opts: argparse.Namespace, out: Path) -> None:
    print(f"\n== poll answers, {run.backend}: preparing {run.database_url}", flush=True)
    server_run = wh.BackendRun(run.backend, run.database_url, run.redis_url)
    community_id = asyncio.run(wh.prepare_store(server_run, opts.pg_admin_url))
    users = stream_users()
    members = [USER_BASE + slot for slot in range(users) if is_member_slot(slot)]
    members += [SILENT_BASE + n for n in range(SILENT)]
    outsiders = [USER_BASE + slot for slot in range(users) if not is_member_slot(slot)]
    world = asyncio.run(
        seed_world(
            run.database_url,
            community_id,
            members,
            CANDIDATES,
            persons_only=outsiders[::2],
        )
    )
    # The vote as it stands late in its course: every user of the stream has answered every
    # poll once (10,900 ballots), so every cell runs against the same, largest tally.
    stream_tids = [USER_BASE + slot for slot in range(users)]
    asyncio.run(seed_ballots(run.database_url, world, stream_tids, datetime.now(UTC)))
    run.world = {**asdict(world), "member_tids": len(world.member_tids)}
    steps = vote_steps(CANDIDATES)
    run.steps = [step.name for step in steps]
    steps_path = stream.write_lua(steps, out / f"steps-{run.backend}.lua")
    print(
        f"   vote {world.vote_id}: {len(members)} members ({SILENT} silent), "
        f"{len(world.item_ids)} polls, {OUTSIDERS} non-members in the stream, "
        f"{len(stream_tids) * len(world.item_ids)} ballots already in; {len(steps)} steps a cycle",
        flush=True,
    )

    def measure_cell(load: wh.Load, mode: str, concurrency: int, pids: dict[str, int]) -> VoteCell:
        return measure(
            run.backend, world, run.database_url, load, mode, concurrency, opts, pids, out
        )

    with wh.serve(server_run, opts, out) as up:
        loads = {
            mode: wh.Load(
                url=url,
                steps_path=steps_path,
                users=users,
                threads=1,
                cpu=up.load_cpu,
                log=out / f"wrk-{run.backend}.log",
            )
            for mode, url in up.urls.items()
        }
        run.cells += wh.sweep(up, loads, opts, measure_cell, describe, retry_note="noisy")
    run.bot_api_calls = up.bot_api_calls
    run.server_log_errors = up.log_errors
    state = asyncio.run(vote_state(run.database_url, world.vote_id))
    run.final = {**state, "closed_at": str(state["closed_at"])}


# --- close and tally -------------------------------------------------------------------------


@dataclass
class CloseTiming:
    seconds: float
    statements: int
    sql_seconds: float
    outbox_rows: int
    seed_seconds: float


async def close_once(
    backend: str, database_url: str, pg_admin: str, members: int, candidates: int, delivery: str
) -> CloseTiming:
    from sqlalchemy import event, func, select

    from storage.db import create_engine, create_sessionmaker
    from storage.models import CouncilVoteItem, Notification
    from storage.services import council

    community_id = await wh.prepare_store(wh.BackendRun(backend, database_url, None), pg_admin)
    convened = datetime.now(UTC) - timedelta(days=VOTE_DAYS)
    member_tids = [USER_BASE + n for n in range(members)]
    world = await seed_world(
        database_url, community_id, member_tids, candidates, delivery=delivery, now=convened
    )
    voted = convened + timedelta(hours=1)
    expected = await seed_ballots(database_url, world, world.member_tids, voted)

    engine = create_engine(database_url)
    stats = {"statements": 0, "sql": 0.0}
    started: list[float] = []

    def before(*_args: Any) -> None:
        started.append(time.perf_counter())

    def after(*_args: Any) -> None:
        stats["statements"] += 1
        stats["sql"] += time.perf_counter() - started.pop()

    try:
        sessions = create_sessionmaker(engine)
        async with sessions() as session:  # a warm pool, as in a running service
            outbox_before = int(await session.scalar(select(func.count(Notification.id))) or 0)
        event.listen(engine.sync_engine, "before_cursor_execute", before)
        event.listen(engine.sync_engine, "after_cursor_execute", after)
        async with sessions() as session:
            began = time.perf_counter()
            result = await council.close_vote(
                session, world.vote_id, now=world.closes_at + timedelta(seconds=1)
            )
            seconds = time.perf_counter() - began
        event.remove(engine.sync_engine, "before_cursor_execute", before)
        event.remove(engine.sync_engine, "after_cursor_execute", after)
        assert result is not None, "the vote was not closed"
        async with sessions() as session:
            items = (
                await session.scalars(
                    select(CouncilVoteItem).where(CouncilVoteItem.vote_id == world.vote_id)
                )
            ).all()
            for item in items:
                got = [item.agree, item.against, item.abstain]
                if got != expected[item.id]:
                    raise AssertionError(f"item {item.id}: tally {got} != {expected[item.id]}")
            outbox = int(await session.scalar(select(func.count(Notification.id))) or 0)
        assert set(result.outcomes) == set(expected)
        want_polls = candidates * (members if delivery == "private" else 1)
        assert len(result.polls_to_stop) == want_polls, len(result.polls_to_stop)
        audiences = (members if delivery == "private" else 1) + 1 + candidates
        if outbox - outbox_before != audiences:
            raise AssertionError(f"{outbox - outbox_before} outbox rows, {audiences} expected")
    finally:
        await engine.dispose()
    return CloseTiming(
        seconds, int(stats["statements"]), stats["sql"], outbox - outbox_before, world.seconds
    )


@dataclass
class CloseCase:
    backend: str
    shape: str
    delivery: str
    members: int
    candidates: int
    runs: list[CloseTiming] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        ms = [r.seconds * 1000 for r in self.runs]
        sql = [r.sql_seconds * 1000 for r in self.runs]
        return {
            "median_ms": round(statistics.median(ms), 1),
            "min_ms": round(min(ms), 1),
            "max_ms": round(max(ms), 1),
            "sql_median_ms": round(statistics.median(sql), 1),
        }


def run_close(backend: str, database_url: str, opts: argparse.Namespace) -> list[CloseCase]:
    cases = []
    for shape in opts.close_shapes:
        members, candidates = CLOSE_SHAPES[shape]
        for delivery in opts.close_delivery:
            case = CloseCase(backend, shape, delivery, members, candidates)
            for _ in range(opts.close_runs):
                if opts.wait_quiet:
                    wh.wait_quiet(opts.wait_quiet, set())
                timing = asyncio.run(
                    close_once(
                        backend, database_url, opts.pg_admin_url, members, candidates, delivery
                    )
                )
                case.runs.append(timing)
            s = case.summary()
            print(
                f"   close {shape:8} {delivery:7} median {s['median_ms']:8.1f} ms "
                f"(min {s['min_ms']:.1f}, max {s['max_ms']:.1f}; {len(case.runs)} runs); "
                f"{case.runs[0].statements} statements, SQL {s['sql_median_ms']:.1f} ms; "
                f"{case.runs[0].outbox_rows} outbox rows",
                flush=True,
            )
            cases.append(case)
    return cases


# --- report ----------------------------------------------------------------------------------


def stream_table(run: StreamRun) -> str:
    lines = [
        "| concurrency | baseline upd/s | poll_answer upd/s | ratio | baseline p99 ms "
        "| full p99 ms | ratio | full p50 ms | ballots written | server CPU b/f "
        "| PostgreSQL+Redis CPU | other CPU b/f | server RSS MiB b/f |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency, base, full in wh.by_concurrency(run.cells):
        rps_ratio = p99_ratio = "–"
        if base and full and base.rps and base.p99_ms:
            rps_ratio = f"{full.rps / base.rps:.2f}"
            p99_ratio = f"{full.p99_ms / base.p99_ms:.1f}"
        lines.append(
            f"| {concurrency}{wh.invalid_note(base, full)} | {wh.num(base, 'rps')} "
            f"| {wh.num(full, 'rps')} | {rps_ratio} "
            f"| {wh.num(base, 'p99_ms')} | {wh.num(full, 'p99_ms')} | {p99_ratio} "
            f"| {wh.num(full, 'p50_ms')} | {f'{full.ballots_written:,}' if full else '–'} "
            f"| {wh.share(base, 'server')} / {wh.share(full, 'server')} "
            f"| {wh.share(full, 'db')} "
            f"| {wh.share(base, 'rest')} / {wh.share(full, 'rest')} "
            f"| {wh.rss(base)} / {wh.rss(full)} |"
        )
    return "\n".join(lines)


def close_table(cases: list[CloseCase]) -> str:
    lines = [
        "| backend | ballots | polls in | median ms | min–max ms | runs | SQL statements "
        "| time in SQL (median) | outbox rows |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        s = case.summary()
        lines.append(
            f"| {case.backend} | {case.members:,} members × {case.candidates} "
            f"| {'council group' if case.delivery == 'group' else 'private chats'} "
            f"| {s['median_ms']:,.1f} | {s['min_ms']:,.1f}–{s['max_ms']:,.1f} | {len(case.runs)} "
            f"| {case.runs[0].statements:,} | {s['sql_median_ms']:,.1f} ms "
            f"| {case.runs[0].outbox_rows:,} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.votes", description=__doc__.split("\n\n")[0]
    )
    wh.add_cell_options(parser, "1,10,100", "3 s cells, 1 s warm-up, 2 closes")
    parser.add_argument(
        "--close-runs", type=int, default=None, help="closes per case, each on a fresh DB (5)"
    )
    parser.add_argument("--close-shapes", default=",".join(CLOSE_SHAPES), help="10000x1,1000x10")
    parser.add_argument("--close-delivery", default="group,private", help="group,private")
    parser.add_argument("--skip-stream", action="store_true", help="only close-and-tally")
    parser.add_argument("--skip-close", action="store_true", help="only the poll answers")
    wh.add_run_options(
        parser,
        pg_url="postgresql+asyncpg://postgres@127.0.0.1:5432/bench_votes",
        redis_url="redis://127.0.0.1:6379/13",
    )
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.duration, opts.warmup = 3, 1
    if opts.close_runs is None:
        opts.close_runs = 2 if opts.quick else 5
    wh.check_options(parser, opts)
    opts.close_shapes = [s.strip() for s in opts.close_shapes.split(",") if s.strip()]
    opts.close_delivery = [d.strip() for d in opts.close_delivery.split(",") if d.strip()]
    if any(s not in CLOSE_SHAPES for s in opts.close_shapes):
        parser.error(f"--close-shapes takes {', '.join(CLOSE_SHAPES)}")
    if any(d not in ("group", "private") for d in opts.close_delivery):
        parser.error("--close-delivery takes group and/or private")
    if opts.close_runs < 1:
        parser.error("--close-runs must be at least 1")
    return opts


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    if not opts.skip_stream and shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    stamp, out = wh.new_results_dir("votes-")

    where = wh.machine()  # before the runs, as bench.webhook: the code may change meanwhile
    runs: list[StreamRun] = []
    closes: list[CloseCase] = []
    for backend in opts.backends:
        if not opts.skip_stream:
            on = wh.BackendRun.on(backend, out / "votes.db", opts)
            run = StreamRun(on.backend, on.database_url, on.redis_url)
            run_stream(run, opts, out)
            runs.append(run)
    for backend in opts.backends:
        if not opts.skip_close:
            print(f"\n== close and tally, {backend}", flush=True)
            closes += run_close(
                backend, wh.BackendRun.on(backend, out / "close.db", opts).database_url, opts
            )

    command = wh.command_line("bench.votes", argv)
    report = {
        **wh.report_head(stamp, command, where, opts),
        "stream": [wh.run_record(run) for run in runs],
        "close": [{**asdict(case), "summary": case.summary()} for case in closes],
    }
    (out / "results.json").write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    print(wh.headline(command, stamp, where, out))
    for run in runs:
        print(f"\n### Poll answers, {run.backend}\n\n{stream_table(run)}\n")
        print(
            f"vote after the run: {run.final}; Bot API calls: {run.bot_api_calls}; "
            f"server log lines with Traceback/WARNING: {run.server_log_errors}"
        )
    if closes:
        print(f"\n### Close and tally\n\n{close_table(closes)}")
    wh.exit_if_invalid(cell for run in runs for cell in run.cells)


if __name__ == "__main__":
    main()
