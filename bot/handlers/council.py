"""The residents' council (居民议事会) in Telegram: counting the answers to its polls, /votes in a
private chat, and `/bind council`, by which a community's staff makes a group the council's.

Poll answers are silent, as Telegram's polls are: nothing is said to the voter. The store
decides what counts (members of the vote's council, before the close; the same answer twice
changes nothing; an answer from an older update than the one counted, handled late because
updates may arrive out of order, changes nothing either: the update's id goes with it). When
the last member's answer completes the vote, it is closed early by `vote_closer` (from the
dispatcher's workflow data), run by UpdateSessionMiddleware once this update's transaction,
the ballot in it, has committed (`after_commit`).

/votes also tells a member whose private polls Telegram refused (they had not started the bot,
or had blocked it) that they are on their way: asking is writing to the bot, so those polls are
sent now (bot.polls.send_owed_polls), after this update's commit.

Telegram also sends a `poll` update at each change of a poll the bot posted. For a poll the
store knows (nearly always) that is one lookup; a poll it does not know is the orphan of a
sendPoll whose answer was lost (bot.polls), recognised by its question, and the answers kept
for it are counted (council.recognise_poll).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC
from typing import Any

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, Poll, PollAnswer, Update
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import CouncilBindCb
from bot.filters import GROUP_TYPES, IsCommand
from bot.handlers.groups import bind_group, cmd_private_only
from bot.keyboards import council_bind_keyboard
from bot.polls import POLL_OPTIONS, AfterCommitHooks, PollSender, send_owed_polls
from bot.texts import choice_label, listing, local_deadline, quote
from dialogs import suggestion as suggestion_dialog
from dialogs.common import Reply, settle, stale
from dialogs.org_picker import community_names, community_path, get_community
from dialogs.staff import staff_principals
from storage.models import ChatPurpose, Community, CouncilVote, CouncilVoteItem, PollSendState
from storage.models import utcnow as now_utc
from storage.rules import Role, ScopeLevel, poll_option
from storage.services import access, chats, council, org
from storage.services.council.sending import MemberSend, member_sends
from storage.settings import Settings

log = logging.getLogger(__name__)

VoteCloser = Callable[[int], Awaitable[Any]]

# `/bind council` (also in Chinese): what makes a group the council's rather than the residents'.
COUNCIL_ARGS = frozenset({"council", "Council", "COUNCIL", "议事会", "议事会群"})
BIND_BUTTONS_MAX = 50
# The options of every council poll, as Telegram shows them.
POLL_OPTION_TEXTS = [poll_option(option) for option in POLL_OPTIONS]


# --- poll answers ------------------------------------------------------------------------


async def on_poll_answer(
    poll_answer: PollAnswer,
    session: AsyncSession,
    event_update: Update | None = None,
    vote_closer: VoteCloser | None = None,
    after_commit: AfterCommitHooks | None = None,
) -> None:
    """A member's answer, ordered by its update (aiogram's `event_update`): a poll_answer has
    no chat, so nothing serialises one voter's answers before the store does."""
    if poll_answer.user is None:
        return  # an anonymous voter (voter_chat): council polls are never anonymous
    result = await council.record_answer(
        session,
        poll_answer.poll_id,
        poll_answer.user.id,
        list(poll_answer.option_ids),
        update_id=event_update.update_id if event_update is not None else None,
    )
    if result is None or not result.everyone_voted:
        return
    _close_early(result.vote_id, vote_closer, after_commit)


def _close_early(
    vote_id: int, vote_closer: VoteCloser | None, after_commit: AfterCommitHooks | None
) -> None:
    """Everyone has voted: close the vote once this update's transaction has committed."""
    if vote_closer is None or after_commit is None:
        log.info("vote %s: everyone voted, left for the scheduler to close", vote_id)
        return
    after_commit.append(functools.partial(vote_closer, vote_id))


async def on_poll(
    poll: Poll,
    session: AsyncSession,
    vote_closer: VoteCloser | None = None,
    after_commit: AfterCommitHooks | None = None,
) -> None:
    """A poll the bot posted changed. One that is not a council poll's shape costs nothing,
    a known one a lookup; an unknown one is recognised when it can be (council.recognise_poll),
    and when its kept answers complete the vote, the vote is closed early."""
    if poll.is_anonymous or poll.allows_multiple_answers:
        return
    if [option.text for option in poll.options] != POLL_OPTION_TEXTS:
        return
    close_date = poll.close_date
    if close_date is not None and close_date.tzinfo is None:
        close_date = close_date.replace(tzinfo=UTC)
    found = await council.recognise_poll(session, poll.id, poll.question, close_date=close_date)
    if found is not None and found.everyone_voted:
        _close_early(found.vote_id, vote_closer, after_commit)


# --- /votes ---------------------------------------------------------------------------------


# A private send that put (or may have put) a poll in the member's chat.
_IN_THE_CHAT = (PollSendState.SENT, PollSendState.UNCERTAIN, PollSendState.SENDING)


def _undelivered(
    vote: CouncilVote, sends: dict[int, MemberSend], choices: dict[int, Any]
) -> set[int]:
    """The items of a vote sent to members privately whose poll has not reached this member
    and will not by itself: refused, or never sent where the sending is over or gave up on
    their chat (refused there). Items they have answered had their poll."""
    states = {item.id: sends[item.id].state for item in vote.items if item.id in sends}
    refused = PollSendState.REFUSED in states.values()
    if not refused and vote.polls_sent_at is None:
        return set()  # still being sent
    return {
        item.id
        for item in vote.items
        if item.id not in choices and states.get(item.id) not in _IN_THE_CHAT
    }


async def _where(
    session: AsyncSession, vote: CouncilVote, *, undelivered: bool, resending: bool
) -> str:
    if vote.council_chat_id is not None:
        chat = await chats.get_chat(session, vote.council_chat_id)
        return _("Vote in the polls in the council's group “{title}”.").format(
            title=quote(chat.title if chat is not None and chat.title else "—")
        )
    if resending:
        return "⚠️ " + _(
            "Some of these polls could not be delivered to you before, because you had not "
            "started a chat with me yet (or had blocked me). I am sending them to you in this "
            "chat now: please vote in them. If they have not arrived in a few minutes, send "
            "/votes again."
        )
    if undelivered:
        return "⚠️ " + _(
            "Some of these polls could not be delivered to you. The community's staff have "
            "been told; please ask them about it."
        )
    return _("Vote in the polls I sent you in this chat.")


def _mark(item: CouncilVoteItem, choices: dict[int, Any], undelivered: set[int]) -> str:
    if item.id in choices and choices[item.id] is not None:
        return "✅ " + _("voted: {choice}").format(choice=choice_label(choices[item.id]))
    if item.id in undelivered:
        return "⚠️ " + _("poll not delivered yet")
    return "⏳ " + _("not voted yet")


async def votes_text(
    session: AsyncSession,
    telegram_id: int,
    settings: Settings,
    *,
    resending: Collection[int] = (),
) -> str:
    """The open votes of this person, with what they chose on each candidate. Of a vote sent
    to members privately, the polls that have not reached them are marked, and it says what
    happens to them: on their way (`resending`: the votes send_owed_polls owed them again),
    or refused for another reason, which the convener was told."""
    votes = await council.open_votes_for(session, telegram_id, now=now_utc())
    if not votes:
        principals = await access.principals_of_telegram_user(session, telegram_id)
        if not any(p.role is Role.COUNCIL_MEMBER for p in principals):
            return _(
                "/votes is for the members of a residents' council, who vote on the "
                "suggestions the community puts to them. If you are one of them, please ask your "
                "community's staff for an invitation link. To suggest a project yourself, "
                "send /suggest."
            )
        return _("No council vote is open for you at the moment.")
    choices = await council.my_choices(session, telegram_id, [vote.id for vote in votes])
    private = [vote.id for vote in votes if vote.council_chat_id is None]
    sends = await member_sends(session, private, telegram_id)
    blocks: list[str] = []
    for vote in votes:
        missing = _undelivered(vote, sends, choices) if vote.council_chat_id is None else set()
        lines = [
            _("<b>{community}</b> · open until {deadline}").format(
                community=quote(vote.community.name),
                deadline=local_deadline(vote.closes_at, settings.tz),
            ),
            await _where(session, vote, undelivered=bool(missing), resending=vote.id in resending),
        ]
        for item in vote.items:
            lines.append(
                f"{item.position}. <b>{quote(item.suggestion.number)}</b> "
                f"{quote(item.suggestion.title)} — {_mark(item, choices, missing)}"
            )
        blocks.append("\n".join(lines))
    return listing(_("Council votes open for you"), blocks)


async def cmd_votes(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
    raw_state: str | None,
    council_poll_sender: PollSender | None = None,
    after_commit: AfterCommitHooks | None = None,
) -> Reply:
    """A member asking is a member who can be written to: polls Telegram refused them before
    are sent now (send_owed_polls), and the answer says so."""
    assert message.from_user is not None
    telegram_id = message.from_user.id
    resending = await send_owed_polls(session, telegram_id, council_poll_sender, after_commit)
    text = await votes_text(session, telegram_id, settings, resending=resending)
    return await suggestion_dialog.answer_then_continue(
        message, text, state, session, bot, raw_state
    )


# --- /bind council ---------------------------------------------------------------------------


async def covered_communities(session: AsyncSession, telegram_id: int) -> list[Community]:
    """The communities whose council the person may bind: those their staff roles cover."""
    found: dict[int, Community] = {}
    for principal in await staff_principals(session, telegram_id, council.CONVENE_ROLES):
        scope = principal.scope
        if scope.level is ScopeLevel.COMMUNITY and scope.id is not None:
            community = await get_community(session, scope.id)
            if community is not None:
                found[community.id] = community
            continue
        for community in await org.list_communities(session):  # with its street
            place = access.Place(community.id, community.street_id, community.street.district_id)
            if access.covers(scope, place):
                found[community.id] = community
    return sorted(found.values(), key=lambda c: (c.name, c.id))


async def cmd_bind_council(message: Message, session: AsyncSession) -> None:
    if message.from_user is None or message.sender_chat is not None:
        await message.reply(
            _(
                "Please send /bind council under your own name rather than anonymously, so "
                "that I can check that you are one of the community's staff."
            )
        )
        return
    communities = await covered_communities(session, message.from_user.id)
    if not communities:
        await message.reply(
            _(
                "Only a community's staff can make a group its residents' council group. "
                "To link this group to its community as the residents' group, a group admin "
                "sends /bind."
            )
        )
        return
    names = [c.name for c in communities]
    items: list[tuple[int, str]] = []
    for community in communities[:BIND_BUTTONS_MAX]:
        _district, street, name = await community_names(session, community)
        items.append((community.id, f"{street} · {name}" if names.count(name) > 1 else name))
    text = _(
        "Make this group the residents' council group (居民议事会) of which community? Council "
        "votes will be held here as polls; only the council members' answers count."
    )
    await message.reply(text, reply_markup=council_bind_keyboard(items))


async def on_council_bind(
    callback: CallbackQuery, callback_data: CouncilBindCb, session: AsyncSession
) -> None:
    message = callback.message
    if not isinstance(message, Message):
        await stale(callback)
        return
    community = await get_community(session, callback_data.id)
    if community is None:
        await callback.answer(_("That community is no longer available."), show_alert=True)
        return
    principal = await access.principal_for(
        session, callback.from_user.id, community.id, council.CONVENE_ROLES
    )
    if principal is None:
        await callback.answer(
            _("Only the staff of {community} can choose this. Thank you!").format(
                community=community.name
            ),
            show_alert=True,
        )
        return
    await bind_group(callback, message, session, community, ChatPurpose.COUNCIL)
    path = community_path(*await community_names(session, community))
    await settle(
        callback,
        "✅ "
        + _("This group is now the residents' council group of {path}.").format(path=path)
        + "\n"
        + _(
            "When the community's staff convene a council vote (/convene in a private "
            "chat with me), the polls come here. Please make sure every council member is "
            "in this group."
        ),
        answer=_("Linked."),
    )


def create_router() -> Router:
    """Every message handler needs a `Command` with the "/" prefix, so the router turns away
    any other message with one `IsCommand` check."""
    router = Router(name="council")
    router.message.filter(IsCommand())
    private = F.chat.type == ChatType.PRIVATE
    in_group = F.chat.type.in_(GROUP_TYPES)
    router.poll_answer.register(on_poll_answer)
    router.poll.register(on_poll)
    router.message.register(cmd_votes, private, Command("votes"))
    router.message.register(
        cmd_bind_council, in_group, Command("bind", magic=F.args.in_(COUNCIL_ARGS))
    )
    router.message.register(cmd_private_only, in_group, Command("votes", "review", "convene"))
    router.callback_query.register(
        on_council_bind, F.message.chat.type.in_(GROUP_TYPES), CouncilBindCb.filter()
    )
    return router
