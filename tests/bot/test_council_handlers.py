"""The council in Telegram: poll answers counted (members only, a change replaces, an empty
answer retracts, late ones ignored, the same update twice counted once, an older update
handled after a newer one ignored, nothing said to the voter), the early close once everyone
has voted, `poll` updates (one lookup for a known poll),
/votes (saying plainly when a private poll could not be delivered, and what happens to it),
and `/bind council` in a group."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiogram.methods import SendMessage
from aiogram.types import Update
from conftest import OrgTree
from dialog_helpers import STAFF, Sessions, grant
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from telegram_fakes import (
    BOT_USERNAME,
    Group,
    Harness,
    Person,
    alerts,
    button_texts,
    last_text,
    sent,
    utf16_length,
)

from bot.polls import POLL_OPTIONS
from storage.models import Ballot, Chat, ChatPurpose, Community, CouncilVote, utcnow
from storage.rules import (
    Category,
    Choice,
    Kind,
    Role,
    ScopeLevel,
    State,
    poll_option,
    poll_question,
)
from storage.services import chats, council, screening
from storage.services.access import Scope
from storage.services.people import TelegramIdentity
from storage.services.suggestions import Draft, submit

pytest_plugins = ["telegram_fakes"]

ZHAO, QIAN = Person(4001, "赵委员"), Person(4002, "钱委员")
OUTSIDER = Person(4999, "路人")
COUNCIL_GROUP = Group(-100_777, "新沙社区居民议事会")
AGREE, AGAINST, ABSTAIN = [0], [1], [2]


async def bind_council_group(sessionmaker: Sessions, community_id: int) -> None:
    async with sessionmaker() as session:
        community = await session.get(Community, community_id)
        assert community is not None
        await chats.bind_chat(
            session,
            COUNCIL_GROUP.id,
            community,
            title=COUNCIL_GROUP.title,
            chat_type="supergroup",
            bound_by_person_id=None,
            purpose=ChatPurpose.COUNCIL,
        )


class Closer:
    """The vote closer of the process: closes in its own session, as the real one does,
    so it sees only what the update's transaction has committed."""

    def __init__(self, sessionmaker: Sessions) -> None:
        self.sessionmaker = sessionmaker
        self.calls: list[tuple[int, bool]] = []

    async def __call__(self, vote_id: int) -> None:
        async with self.sessionmaker() as session:
            complete = await council.everyone_voted(session, vote_id)
            self.calls.append((vote_id, complete))
            await council.close_vote(session, vote_id)


@pytest.fixture
def h(bot_harness: Harness, sessionmaker: Sessions) -> Harness:
    bot_harness.dispatcher["vote_closer"] = Closer(sessionmaker)
    return bot_harness


def closer(h: Harness) -> Closer:
    found = h.dispatcher["vote_closer"]
    assert isinstance(found, Closer)
    return found


async def open_vote(
    sessionmaker: Sessions,
    org: OrgTree,
    titles: tuple[str, ...] = ("修路灯", "加装扶手"),
    *,
    group: bool = True,
) -> CouncilVote:
    """Staff, a council of two (赵, 钱), candidates, a vote to the council's group, and a poll
    recorded for each candidate (`poll-<item id>`). Without `group`, the polls are to go to
    each member privately, and none is recorded."""
    scope = Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    staff = await grant(sessionmaker, STAFF, Role.COMMUNITY_STAFF, scope)
    for member in (ZHAO, QIAN):
        await grant(sessionmaker, member, Role.COUNCIL_MEMBER, scope)
    if group:
        await bind_council_group(sessionmaker, org.xinsha_id)
    ids = []
    for n, title in enumerate(titles, start=1):
        async with sessionmaker() as session:
            item = await submit(
                session,
                TelegramIdentity(10_000 + n, f"居民{n}"),
                Draft(org.xinsha_id, Category.SAFETY, title, "说明", kind=Kind.SERVICE),
                tz=org_tz(),
                daily_limit=100,
            )
        async with sessionmaker() as session:
            ids.append((await screening.accept(session, staff, item.id)).id)
    async with sessionmaker() as session:
        vote = await council.convene(
            session,
            staff,
            council.ConveneRequest(org.xinsha_id, ids, utcnow() + timedelta(days=1)),
        )
    if not group:
        assert vote.council_chat_id is None
        return vote
    for position, item in enumerate(vote.items):
        async with sessionmaker() as session:
            await council.record_poll(
                session, item.id, poll_id(item.id), COUNCIL_GROUP.id, 9000 + position
            )
    return vote


def org_tz() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Shanghai")


def poll_id(item_id: int) -> str:
    return f"poll-{item_id}"


def answer(h: Harness, person: Person | None, poll: str, option_ids: list[int]) -> Update:
    payload: dict[str, Any] = {
        "poll_id": poll,
        "option_ids": option_ids,
        "option_persistent_ids": [str(i) for i in option_ids],
    }
    if person is None:  # an anonymous voter: Telegram names the chat instead
        payload["voter_chat"] = COUNCIL_GROUP.json()
    else:
        payload["user"] = person.json()
    return h.updates._update(poll_answer=payload)


async def ballots(sessionmaker: Sessions) -> dict[tuple[int, int], Ballot]:
    async with sessionmaker() as session:
        rows = (await session.scalars(select(Ballot))).all()
        return {(b.item_id, b.telegram_id): b for b in rows}


# --- counting --------------------------------------------------------------------------------


async def test_answers_are_counted_silently(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    vote = await open_vote(sessionmaker, org)
    first = vote.items[0].id
    calls = await h.feed(answer(h, ZHAO, poll_id(first), AGREE))
    assert not [c for c in calls if isinstance(c.method, SendMessage)], "polls are silent"
    found = (await ballots(sessionmaker))[(first, ZHAO.id)]
    assert (found.choice, found.counted, found.ignored_reason) == (Choice.AGREE, True, None)

    await h.feed(answer(h, ZHAO, poll_id(first), AGAINST))  # a change replaces it
    found = (await ballots(sessionmaker))[(first, ZHAO.id)]
    assert (found.choice, found.counted) == (Choice.AGAINST, True)

    await h.feed(answer(h, ZHAO, poll_id(first), ABSTAIN))
    assert (await ballots(sessionmaker))[(first, ZHAO.id)].choice is Choice.ABSTAIN

    await h.feed(answer(h, ZHAO, poll_id(first), []))  # an empty answer retracts it
    assert (await ballots(sessionmaker))[(first, ZHAO.id)].choice is None
    assert closer(h).calls == []


async def test_outsiders_are_recorded_and_never_counted(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    vote = await open_vote(sessionmaker, org)
    first = vote.items[0].id
    await h.feed(answer(h, OUTSIDER, poll_id(first), AGREE))
    found = (await ballots(sessionmaker))[(first, OUTSIDER.id)]
    assert (found.counted, found.ignored_reason) == (False, "not_member")


async def test_anonymous_and_unknown_polls_are_ignored(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    vote = await open_vote(sessionmaker, org)
    await h.feed(answer(h, None, poll_id(vote.items[0].id), AGREE))
    await h.feed(answer(h, ZHAO, "some-other-poll", AGREE))
    assert await ballots(sessionmaker) == {}


async def test_late_answers_do_not_count(h: Harness, org: OrgTree, sessionmaker: Sessions) -> None:
    vote = await open_vote(sessionmaker, org, ("修路灯",))
    item = vote.items[0].id
    await h.feed(answer(h, ZHAO, poll_id(item), AGREE))
    async with sessionmaker() as session:
        assert await council.close_vote(session, vote.id, now=vote.closes_at)
    await h.feed(answer(h, ZHAO, poll_id(item), AGAINST))  # changing after the close
    await h.feed(answer(h, QIAN, poll_id(item), AGREE))  # first answer after the close
    found = await ballots(sessionmaker)
    assert (found[(item, ZHAO.id)].choice, found[(item, ZHAO.id)].counted) == (Choice.AGREE, True)
    assert (found[(item, QIAN.id)].counted, found[(item, QIAN.id)].ignored_reason) == (
        False,
        "late",
    )
    assert closer(h).calls == []


async def test_everyone_voted_closes_early_once(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    vote = await open_vote(sessionmaker, org, ("修路灯",))
    poll = poll_id(vote.items[0].id)
    first = answer(h, ZHAO, poll, AGREE)
    await h.feed(first)
    await h.feed(first)  # Telegram delivers the same update again
    assert closer(h).calls == []
    last = answer(h, QIAN, poll, AGREE)
    await h.feed(last)
    # Called once the update's transaction committed: the closer saw both ballots.
    assert closer(h).calls == [(vote.id, True)]
    await h.feed(last)
    assert closer(h).calls == [(vote.id, True)], "the same update counts once"
    async with sessionmaker() as session:
        closed = await council.get_vote(session, vote.id)
        assert closed is not None and closed.status.value == "closed"
        assert closed.items[0].suggestion.status is State.RESOLVED_CANDIDATE
        assert (closed.items[0].agree, closed.items[0].abstain) == (2, 0)


async def test_an_older_answer_handled_after_a_newer_one_changes_nothing(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    """Updates may arrive out of order (Telegram redelivers one after a 503, another replica
    handles the next one first): a member's ballot holds the answer of their latest update,
    and an older answer handled late does not complete the vote either."""
    vote = await open_vote(sessionmaker, org, ("修路灯",))
    item = vote.items[0].id
    poll = poll_id(item)
    # 赵 taps Agree, then changes to Against: the later update is handled first.
    earlier, later = answer(h, ZHAO, poll, AGREE), answer(h, ZHAO, poll, AGAINST)
    assert earlier.update_id < later.update_id
    await h.feed(later)
    await h.feed(earlier)
    found = (await ballots(sessionmaker))[(item, ZHAO.id)]
    assert (found.choice, found.counted) == (Choice.AGAINST, True)
    # 钱 agrees, then takes it back: with their Agree, everyone would have voted.
    agreed, retracted = answer(h, QIAN, poll, AGREE), answer(h, QIAN, poll, [])
    await h.feed(retracted)
    await h.feed(agreed)
    assert (await ballots(sessionmaker))[(item, QIAN.id)].choice is None
    assert closer(h).calls == []
    async with sessionmaker() as session:
        found_vote = await council.get_vote(session, vote.id)
        assert found_vote is not None and found_vote.status.value == "open"


async def test_without_a_closer_the_scheduler_closes(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    vote = await open_vote(sessionmaker, org, ("修路灯",))
    poll = poll_id(vote.items[0].id)
    await bot_harness.feed(answer(bot_harness, ZHAO, poll, AGREE))
    await bot_harness.feed(answer(bot_harness, QIAN, poll, AGREE))
    async with sessionmaker() as session:
        found = await council.get_vote(session, vote.id)
        assert found is not None and found.status.value == "open"
    assert len(await ballots(sessionmaker)) == 2


# --- /votes ----------------------------------------------------------------------------------


async def test_votes_lists_what_is_open_for_a_member(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    vote = await open_vote(sessionmaker, org)
    first, second = vote.items
    text = last_text(await h.say(ZHAO, "/votes"))
    assert text.startswith("<b>等待您参加的议事会表决</b>")
    assert "<b>新沙社区</b> · 截止 " in text and "（北京时间）" in text
    assert "请在议事会群“新沙社区居民议事会”中的投票里表决。" in text
    assert f"1. <b>{first.suggestion.number}</b> 修路灯 — ⏳ 尚未投票" in text
    await h.feed(answer(h, ZHAO, poll_id(first.id), AGREE))
    text = last_text(await h.say(ZHAO, "/votes"))
    assert f"1. <b>{first.suggestion.number}</b> 修路灯 — ✅ 已投票：同意" in text
    assert f"2. <b>{second.suggestion.number}</b> 加装扶手 — ⏳ 尚未投票" in text


async def test_votes_when_there_is_none(h: Harness, org: OrgTree, sessionmaker: Sessions) -> None:
    await grant(sessionmaker, ZHAO, Role.COUNCIL_MEMBER, Scope(ScopeLevel.COMMUNITY, org.tianan_id))
    assert last_text(await h.say(ZHAO, "/votes")) == "目前没有等待您参加的议事会表决。"


async def test_votes_tells_someone_not_on_a_council_what_it_is_for(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    await open_vote(sessionmaker, org)
    assert last_text(await h.say(OUTSIDER, "/votes")) == (
        "/votes 供居民议事会成员查看并参加对建议项目的表决。如果您是议事会成员，"
        "请向社区工作人员索取邀请链接。如果您想提建议，请发送 /suggest。"
    )


async def test_votes_in_english_and_in_a_group(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    await open_vote(sessionmaker, org)
    ann = Person(ZHAO.id, "Zhao", language_code="en")
    text = last_text(await h.say(ann, "/votes"))
    assert text.startswith("<b>Council votes open for you</b>") and "not voted yet" in text
    calls = await h.say(ZHAO, "/votes", COUNCIL_GROUP)
    assert last_text(calls) == "这个功能请在与我的私聊中使用。"


async def test_votes_says_when_a_private_poll_could_not_be_delivered(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    """No council group: the polls go to each member privately. 赵's first poll was refused
    (for a reason other than his chat being closed to the bot), so the second was never sent
    to him. /votes used to tell him "请在我发到本对话中的投票里表决" all the same."""
    vote = await open_vote(sessionmaker, org, group=False)
    first, second = vote.items
    async with sessionmaker() as session:
        for position, item in enumerate(vote.items):
            await council.record_poll(session, item.id, f"qian-{item.id}", QIAN.id, 500 + position)
        await council.record_send_error(
            session, first.id, "Bad Request: chat not found", chat_id=ZHAO.id
        )
    text = last_text(await h.say(ZHAO, "/votes"))
    assert "请在我发到本对话中的投票里表决" not in text
    assert "⚠️ 下列部分投票没能发给您。社区工作人员已收到通知，请向他们询问。" in text
    assert f"1. <b>{first.suggestion.number}</b> 修路灯 — ⚠️ 投票尚未送达" in text
    assert f"2. <b>{second.suggestion.number}</b> 加装扶手 — ⚠️ 投票尚未送达" in text
    # 钱 had both: nothing is said to her of it.
    text = last_text(await h.say(QIAN, "/votes"))
    assert "请在我发到本对话中的投票里表决。" in text and "尚未送达" not in text


async def test_votes_owes_a_member_the_polls_his_closed_chat_refused(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    """赵 had never started the bot, so Telegram refused his polls. His /votes is him writing
    to the bot: the vote owes him those polls again (the scheduler's resume sends them when
    the process's sender is not at hand, as here), and he is told they are on their way."""
    vote = await open_vote(sessionmaker, org, group=False)
    async with sessionmaker() as session:
        await council.record_send_error(
            session,
            vote.items[0].id,
            "Forbidden: bot can't initiate conversation with a user",
            chat_id=ZHAO.id,
            unreachable=True,
        )
        await session.execute(
            update(CouncilVote).where(CouncilVote.id == vote.id).values(polls_sent_at=utcnow())
        )
        await session.commit()
    text = last_text(await h.say(ZHAO, "/votes"))
    assert "请在我发到本对话中的投票里表决" not in text
    assert "由于您此前还没有和我开始私聊（或屏蔽了我），下列部分投票当时没能发给您。" in text
    assert "我现在把它们发到本对话中" in text and "请再次发送 /votes" in text
    assert text.count("⚠️ 投票尚未送达") == 2
    async with sessionmaker() as session:
        assert await council.votes_with_unsent_polls(session, utcnow()) == [vote.id]


# --- /bind council ---------------------------------------------------------------------------


async def council_chat(sessionmaker: Sessions) -> Chat | None:
    async with sessionmaker() as session:
        return await session.get(Chat, COUNCIL_GROUP.id)


async def test_staff_binds_the_council_group(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    await grant(
        sessionmaker, STAFF, Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    )
    calls = await h.say(STAFF, "/bind council", COUNCIL_GROUP)
    assert "要把本群设为哪个社区的居民议事会群？" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == ["新沙社区"]
    calls = await h.press(OUTSIDER, "新沙社区", COUNCIL_GROUP, exact=True)
    assert alerts(calls) == ["只有新沙社区的工作人员才能选择，谢谢！"]
    assert await council_chat(sessionmaker) is None
    calls = await h.press(STAFF, "新沙社区", COUNCIL_GROUP, exact=True)
    assert alerts(calls) == ["绑定成功。"]
    assert last_text(calls).startswith("✅ 本群已设为福田区 › 沙头街道 › 新沙社区的居民议事会群。")
    chat = await council_chat(sessionmaker)
    assert chat is not None and chat.purpose is ChatPurpose.COUNCIL
    assert chat.community_id == org.xinsha_id and chat.title == COUNCIL_GROUP.title


async def test_only_staff_may_bind_the_council_group(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    await grant(sessionmaker, ZHAO, Role.COUNCIL_MEMBER, Scope(ScopeLevel.COMMUNITY, org.xinsha_id))
    h.session.member_status[(COUNCIL_GROUP.id, ZHAO.id)] = "administrator"
    text = last_text(await h.say(ZHAO, "/bind council", COUNCIL_GROUP))
    assert text.startswith("只有社区工作人员才能把群设为居民议事会群。")
    assert await council_chat(sessionmaker) is None


async def test_anonymous_admins_are_asked_to_speak_for_themselves(h: Harness, org: OrgTree) -> None:
    command = "/bind council"
    update = h.updates.message(
        STAFF,
        COUNCIL_GROUP,
        text=command,
        sender_chat=COUNCIL_GROUP.json(),
        entities=[{"type": "bot_command", "offset": 0, "length": utf16_length("/bind")}],
    )
    text = last_text(await h.feed(update))
    assert text.startswith("请以您本人的身份（不要匿名）发送 /bind council")


async def test_plain_bind_still_binds_the_residents_group(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    h.session.member_status[(COUNCIL_GROUP.id, STAFF.id)] = "administrator"
    calls = await h.say(STAFF, f"/bind@{BOT_USERNAME}", COUNCIL_GROUP)
    assert "请群管理员为本群绑定所属社区" in last_text(calls)


async def test_a_street_official_chooses_among_the_streets_communities(
    h: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    await grant(sessionmaker, STAFF, Role.STREET_OFFICIAL, Scope(ScopeLevel.STREET, org.street_id))
    calls = await h.say(STAFF, "/bind 议事会", COUNCIL_GROUP)
    assert button_texts(sent(calls)[-1].markup) == ["天安社区", "新沙社区"]
    await h.press(STAFF, "天安社区", COUNCIL_GROUP, exact=True)
    chat = await council_chat(sessionmaker)
    assert chat is not None and chat.community_id == org.tianan_id
    assert chat.purpose is ChatPurpose.COUNCIL


# --- `poll` updates ----------------------------------------------------------------------------


def poll_state(h: Harness, poll: str, question: str, **changes: Any) -> Update:
    """Telegram's `poll` update: the poll as it stands after a change (an answer)."""
    options = [
        {"text": poll_option(text), "voter_count": 0, "persistent_id": str(n)}
        for n, text in enumerate(POLL_OPTIONS)
    ]
    state = {
        "id": poll,
        "question": question,
        "options": options,
        "total_voter_count": 1,
        "is_closed": False,
        "is_anonymous": False,
        "type": "regular",
        "allows_multiple_answers": False,
        "allows_revoting": True,
        "members_only": False,
    }
    return h.updates._update(poll=state | changes)


async def test_a_poll_update_costs_one_lookup(
    h: Harness, org: OrgTree, sessionmaker: Sessions, engine: AsyncEngine
) -> None:
    """Telegram sends a `poll` update with (nearly) every answer. For a known poll the handler
    asks the store one thing, by primary key, and writes nothing; one that is not shaped as
    a council poll costs no SQL at all."""
    vote = await open_vote(sessionmaker, org)
    item = vote.items[0]
    question = poll_question(item.suggestion.number, item.suggestion.title)
    assert "poll" in h.dispatcher.resolve_used_update_types()
    statements: list[str] = []

    def record(*args: Any) -> None:
        if "processed_update" not in args[2]:  # the update's de-duplication mark
            statements.append(args[2])

    async def cost(update: Update) -> list[str]:
        statements.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            await h.feed(update)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)
        return list(statements)

    (known,) = await cost(poll_state(h, poll_id(item.id), question))
    assert known.lstrip().startswith("SELECT") and "FROM council_poll" in known
    assert "WHERE council_poll.poll_id =" in known
    assert await cost(poll_state(h, "other", question, is_anonymous=True)) == []
    two = [
        {"text": "是", "voter_count": 1, "persistent_id": "0"},
        {"text": "否", "voter_count": 0, "persistent_id": "1"},
    ]
    assert await cost(poll_state(h, "other", "去哪里聚餐？", options=two)) == []
    assert await ballots(sessionmaker) == {}
    assert closer(h).calls == []
