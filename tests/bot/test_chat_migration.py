"""A council's group upgraded to a supergroup in the middle of a vote: the upgrade's service
message moves the vote to the new chat id, its polls are posted there again (those in the old
group can no longer be answered nor stopped), ballots already cast stay counted, and the
result is announced in the new group."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiogram.utils.i18n import I18n
from sending_fakes import (
    COMMUNITY_CHAT,
    COUNCIL_CHAT,
    T0,
    PollRig,
    add_candidates,
    convene,
    in_days,
    make_council,
    member_tid,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import Group, Harness, Person

from storage.models import ChatPurpose, CouncilPoll, CouncilVote, Notification
from storage.services import chats, council

pytest_plugins = ["telegram_fakes", "sending_fakes"]

Sessions = async_sessionmaker[AsyncSession]
CLOSES = in_days(3)
OLD = Group(COUNCIL_CHAT, "新沙议事会", "group")
NEW_ID = -1_009_876_543_211
ADMIN = Person(501, "王主任")


Sender = PollRig


@pytest.fixture
def sender(sessionmaker: Sessions, pending_i18n: I18n) -> Sender:
    return Sender(sessionmaker, pending_i18n)


async def polls_by_chat(sessionmaker: Sessions) -> dict[int, list[CouncilPoll]]:
    async with sessionmaker() as session:
        found: dict[int, list[CouncilPoll]] = {}
        for poll in (await session.scalars(select(CouncilPoll))).all():
            found.setdefault(poll.chat_id, []).append(poll)
        return found


async def answer(sessionmaker: Sessions, poll_id: str, member: int, option: int) -> None:
    async with sessionmaker() as session:
        result = await council.record_answer(
            session, poll_id, member, [option], now=T0 + timedelta(hours=1)
        )
        await session.commit()
        assert result is not None and result.counted


async def test_a_council_group_upgraded_mid_vote(
    bot_harness: Harness, sender: Sender, sessionmaker: Sessions, org: Any
) -> None:
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, ["修路灯", "装座椅"])
    vote = await convene(council_, ids, closes_at=CLOSES)
    first = await sender.send(vote.id)
    assert len(first.polls) == 2
    async with sessionmaker() as session:
        await council.finish_poll_sending(session, vote.id, now=T0)
    old_polls = (await polls_by_chat(sessionmaker))[COUNCIL_CHAT]
    await answer(sessionmaker, old_polls[0].poll_id, member_tid(0), 0)  # before the upgrade

    # Telegram upgrades the council's group: its service message in the old group.
    calls = await bot_harness.feed(
        bot_harness.updates.message(ADMIN, OLD, migrate_to_chat_id=NEW_ID)
    )
    assert calls == []
    async with sessionmaker() as session:
        stored = await session.get(CouncilVote, vote.id)
        assert stored is not None and stored.council_chat_id == NEW_ID
        council_chats = await chats.bound_chats(session, org.xinsha_id, ChatPurpose.COUNCIL)
        assert [c.id for c in council_chats] == [NEW_ID]
        # The scheduler's resume_poll_sending takes the vote up again.
        assert await council.votes_with_unsent_polls(session, T0 + timedelta(hours=1)) == [vote.id]
    # The polls left in the old group are not to be stopped: the old chat is gone.
    assert all(p.stopped_at is not None for p in (await polls_by_chat(sessionmaker))[COUNCIL_CHAT])

    again = await sender.send(vote.id)
    assert len(again.polls) == 2 and again.header_messages == 1 and again.skipped == 0
    assert [r.name for r in sender.double.delivered(NEW_ID)] == ["SendMessage"] + ["SendPoll"] * 2
    new_polls = (await polls_by_chat(sessionmaker))[NEW_ID]
    await answer(sessionmaker, new_polls[1].poll_id, member_tid(1), 1)

    async with sessionmaker() as session:
        result = await council.close_vote(session, vote.id, now=CLOSES + timedelta(seconds=1))
        assert result is not None
        # Only the polls in the new group are stopped after the close.
        assert sorted(result.polls_to_stop) == sorted((NEW_ID, p.message_id) for p in new_polls)
        closed = await session.get(CouncilVote, vote.id)
        assert closed is not None
        [first_item, second_item] = closed.items
        assert (first_item.agree, second_item.against) == (1, 1)  # both ballots counted
        results = (
            await session.scalars(
                select(Notification.chat_id).where(Notification.kind == "vote_result")
            )
        ).all()
        assert sorted(results) == sorted([NEW_ID, COMMUNITY_CHAT])

    # The next vote goes to the new group from the start.
    more = await add_candidates(council_, ["种树"], proposer_base=11_000)
    later = await convene(council_, more, closes_at=in_days(5), now=T0 + timedelta(days=4))
    assert later.council_chat_id == NEW_ID


async def test_a_group_upgraded_while_its_polls_are_being_sent_gets_them_after(
    sessionmaker: async_sessionmaker[AsyncSession], org: Any
) -> None:
    """A run that sent to the old id ends after the upgrade: its finish lets go of the lease
    without marking the polls sent, so resume_poll_sending sends them to the supergroup."""
    made = await make_council(sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(made, ["修路灯", "装座椅"])
    vote = await convene(made, ids, closes_at=CLOSES)
    async with sessionmaker() as session:
        assert await council.claim_poll_sending(session, vote.id, now=T0)
    async with sessionmaker() as session:
        assert (await chats.migrate_chat(session, COUNCIL_CHAT, NEW_ID)).votes == 1
    async with sessionmaker() as session:
        assert not await council.finish_poll_sending(session, vote.id, now=T0)
        stored = await session.get(CouncilVote, vote.id)
        assert stored is not None and stored.polls_sent_at is None
        assert stored.polls_lease_until is None
        assert await council.votes_with_unsent_polls(session, T0) == [vote.id]
