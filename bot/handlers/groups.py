"""Group chats: the bot added or removed, binding the group to its community (only the group's
admins' presses count), the group's "Suggest a project" deep-link message, and a group
upgraded to a supergroup (its binding follows it to the new chat id). Also the bot blocked
and unblocked in a private chat, which Telegram tells in the same kind of update.

A group is never spammed: the bot speaks when it joins, when a binding step is taken, and when
someone addresses one of its commands to it. Where it may, it pins its "Suggest a project"
message itself (silently); where it may not, the message asks an admin to pin it.

Its admins choose the language the bot speaks in the group with /lang (bot.middlewares then
answers everyone there in it, and its posts to the group are written in it).

/bind in a group already bound does not start over: it says which community the group is
linked to and asks an admin to confirm changing it ("keep" leaves everything as it is).
"""

from __future__ import annotations

import contextlib
import logging

from aiogram import Bot, F, Router
from aiogram.enums import ChatMemberStatus, ChatType
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import JOIN_TRANSITION, LEAVE_TRANSITION, ChatMemberUpdatedFilter, Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.types import (
    CallbackQuery,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.deep_linking import create_start_link
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import BindCb, GroupLangCb, KeepBindingCb, OrgLevel
from bot.filters import GROUP_TYPES, IsCommand
from bot.handlers.commands import group_payload, parse_suggest_payload
from bot.keyboards import (
    LANGUAGE_NAMES,
    language_keyboard,
    private_chat_keyboard,
    suggest_label,
    suggest_link_keyboard,
)
from bot.polls import AfterCommitHooks, PollSender, send_owed_polls
from bot.texts import quote
from dialogs.common import identity, settle, stale
from dialogs.org_picker import community_names, community_path, get_community, render_level
from storage.models import Chat, ChatPurpose, Community
from storage.services import chats, org
from storage.services.people import (
    SUPPORTED_LOCALES,
    ensure_person,
    mark_blocked,
    mark_reachable,
)

log = logging.getLogger(__name__)

# The service messages of a group upgraded to a supergroup: one in the old group
# (migrate_to_chat_id), one in the new supergroup (migrate_from_chat_id).
MIGRATED = F.migrate_to_chat_id | F.migrate_from_chat_id
ADMIN_STATUSES = frozenset({ChatMemberStatus.CREATOR, ChatMemberStatus.ADMINISTRATOR})


def binding_context(storage: BaseStorage, bot: Bot, chat_id: int) -> FSMContext:
    """Where the current binding message of a group is remembered. Presses on any other
    (older) binding message are stale. user_id 0 is nobody, so this never meets a person's
    own conversation state."""
    return FSMContext(storage, StorageKey(bot_id=bot.id, chat_id=chat_id, user_id=0))


async def is_admin(bot: Bot, chat_id: int, user_id: int) -> bool:
    try:
        member = await bot.get_chat_member(chat_id, user_id)
    except TelegramAPIError:
        return False
    return member.status in ADMIN_STATUSES


async def sent_by_admin(message: Message, bot: Bot) -> bool:
    # An anonymous admin writes as the group itself.
    if message.sender_chat is not None and message.sender_chat.id == message.chat.id:
        return True
    if message.from_user is None:
        return False
    return await is_admin(bot, message.chat.id, message.from_user.id)


def binding_heading() -> str:
    return (
        _(
            "Hello! I am the assistant for livelihood micro-projects (民生微实事). Through me, "
            "the residents in this group can suggest small projects for their community."
        )
        + "\n\n<b>"
        + _("A group admin, please link this group to its community.")
        + "</b>"
    )


async def post_binding_prompt(
    bot: Bot, chat_id: int, session: AsyncSession, storage: BaseStorage
) -> None:
    view = await render_level(session, BindCb, OrgLevel.DISTRICTS, 0, 0, binding_heading())
    assert view is not None
    sent = await bot.send_message(chat_id, view.text, reply_markup=view.markup)
    await binding_context(storage, bot, chat_id).set_data({"message_id": sent.message_id})


async def _path(session: AsyncSession, community: Community) -> str:
    return community_path(*await community_names(session, community))


def linked_to_text(purpose: ChatPurpose, path: str) -> str:
    """What the group is bound to now (`path` escaped for HTML)."""
    if purpose is ChatPurpose.COUNCIL:
        return _("This group is the residents' council group of {path}.").format(path=path)
    return _("This group is linked to {path}.").format(path=path)


# --- /bind in a group already bound ---------------------------------------------------------
# A live group is not moved to another community by three taps: an admin first confirms the
# change. Its "Suggest a project" buttons already posted carry the group, not the community,
# in their deep link (g_<chat id>), so they open the form for whatever the group is linked to
# when they are pressed; after the change the bot edits its pinned message to name the new
# community, or posts (and pins) a new one where it has none.


def rebind_keyboard() -> InlineKeyboardMarkup:
    """Change (the picker's first step) or keep the binding."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text="🔄 " + _("Change the link"),
                    callback_data=BindCb(level=OrgLevel.DISTRICTS).pack(),
                ),
                keep_button(),
            ]
        ]
    )


def keep_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text="✖️ " + _("Keep it as it is"), callback_data=KeepBindingCb().pack()
    )


async def post_rebind_prompt(
    bot: Bot, chat: Chat, community: Community, session: AsyncSession, storage: BaseStorage
) -> None:
    """Ask an admin whether to change the community the group `chat` is bound to."""
    if chat.purpose is ChatPurpose.COUNCIL:
        question = _("Make it a community's residents' group instead?")
    else:
        question = _("Link it to another community instead?")
    text = (
        linked_to_text(chat.purpose, await _path(session, community))
        + "\n\n<b>"
        + question
        + "</b>\n\n"
        + _(
            "The “{button}” buttons already posted here follow the link: after a change "
            "they open the form for the new community."
        ).format(button=suggest_label())
    )
    sent = await bot.send_message(chat.id, text, reply_markup=rebind_keyboard())
    await binding_context(storage, bot, chat.id).set_data({"message_id": sent.message_id})


async def picker_heading(session: AsyncSession, bound: Chat | None) -> str:
    """Above the picker: a first binding greets the group; a change says what it replaces."""
    if bound is None or bound.community is None:
        return binding_heading()
    return (
        linked_to_text(bound.purpose, await _path(session, bound.community))
        + "\n\n<b>"
        + _("A group admin, please choose the community to link this group to instead.")
        + "</b>"
    )


def with_keep_button(markup: InlineKeyboardMarkup | None) -> InlineKeyboardMarkup:
    rows = list(markup.inline_keyboard) if markup is not None else []
    return InlineKeyboardMarkup(inline_keyboard=[*rows, [keep_button()]])


# --- the "Suggest a project" message ----------------------------------------------------------


def pin_hint() -> str:
    return _("Admins: pin this message so that everyone can find the button.")


async def pin_quietly(bot: Bot, message: Message) -> bool:
    """Pin `message` without notifying the group's members; False if Telegram refuses (the
    bot is not an admin allowed to pin, and the group does not let members pin)."""
    try:
        await bot.pin_chat_message(message.chat.id, message.message_id, disable_notification=True)
    except (TelegramBadRequest, TelegramForbiddenError) as exc:
        log.info("cannot pin in group %s: %s", message.chat.id, exc)
        return False
    return True


async def suggest_message(
    bot: Bot, chat_id: int, community: Community
) -> tuple[str, InlineKeyboardMarkup]:
    """The text and button of the group's "Suggest a project" message."""
    url = await create_start_link(bot, group_payload(chat_id))
    text = (
        "<b>"
        + _("Suggest a project for {community}").format(community=quote(community.name))
        + "</b>\n\n"
        + _(
            "Have an idea for a small project that would make our community better: fixing a "
            "hazard, tidying a corner, an activity for the elderly or for children? Tap “{button}” "
            "and I will help you write it down in a private chat, step by step."
        ).format(button=suggest_label())
    )
    return text, suggest_link_keyboard(url)


def is_suggest_message(message: Message, bot: Bot) -> bool:
    """The bot's own "Suggest a project" message (its one button a deep link into the form)."""
    if message.from_user is None or message.from_user.id != bot.id:
        return False
    markup = message.reply_markup
    buttons = [b for row in markup.inline_keyboard for b in row] if markup is not None else []
    if len(buttons) != 1 or buttons[0].url is None:
        return False
    _link, _, payload = buttons[0].url.partition("?start=")
    return parse_suggest_payload(payload) is not None


async def rename_pinned_suggest_message(bot: Bot, chat_id: int, community: Community) -> bool:
    """After an admin moved the group to `community`: the group's pinned message, if it is the
    bot's "Suggest a project" message, edited in place to name the new community (its button
    carries the group and needs no change). False where there is none to edit, or Telegram
    refuses; the caller then posts a new one."""
    try:
        pinned = (await bot.get_chat(chat_id)).pinned_message
    except TelegramAPIError as exc:
        log.info("cannot read the pinned message of group %s: %s", chat_id, exc)
        return False
    if pinned is None or not is_suggest_message(pinned, bot):
        return False
    text, markup = await suggest_message(bot, chat_id, community)
    try:
        await bot.edit_message_text(
            text, chat_id=chat_id, message_id=pinned.message_id, reply_markup=markup
        )
    except TelegramBadRequest as exc:
        # Already naming it (a press delivered twice), or too old or gone to edit.
        return "not modified" in exc.message
    return True


async def post_suggest_message(
    bot: Bot, chat_id: int, community: Community, *, pin: bool
) -> Message:
    """The group's "Suggest a project" message, which names `community`, with its deep link to
    the private dialog for the community the group is linked to when it is pressed. With
    `pin`, the bot pins it itself, silently; where Telegram refuses, the message is edited to
    ask an admin to pin it. Trying is cheaper than asking first (getChatMember) on the usual
    path, where the bot is an admin and may pin."""
    text, markup = await suggest_message(bot, chat_id, community)
    sent = await bot.send_message(chat_id, text, reply_markup=markup)
    if pin and not await pin_quietly(bot, sent):
        with contextlib.suppress(TelegramBadRequest, TelegramForbiddenError):
            await bot.edit_message_text(
                text + "\n\n" + pin_hint(),
                chat_id=chat_id,
                message_id=sent.message_id,
                reply_markup=markup,
            )
    return sent


async def bound_community(session: AsyncSession, chat_id: int) -> Community | None:
    chat = await chats.get_chat(session, chat_id)
    if chat is None or chat.community_id is None:
        return None
    return await org.get_community(session, chat.community_id)


async def bound_chat(session: AsyncSession, chat_id: int) -> Chat | None:
    """The group's row if it is bound to a community (with the community loaded)."""
    chat = await chats.get_chat(session, chat_id)
    if chat is None or chat.community is None:
        return None
    return chat


async def on_bot_added(
    event: ChatMemberUpdated, bot: Bot, session: AsyncSession, fsm_storage: BaseStorage
) -> None:
    chat = event.chat
    await chats.note_membership(session, chat.id, chat.title or "", chat.type, is_member=True)
    bound = await bound_chat(session, chat.id)
    try:
        if bound is None or bound.community is None:
            await post_binding_prompt(bot, chat.id, session, fsm_storage)
            return
        path = await _path(session, bound.community)
        if bound.purpose is ChatPurpose.COUNCIL:
            again = _("Hello again! This group is the residents' council group of {path}.")
        else:
            again = _(
                "Hello again! This group is linked to {path}. A group admin can change that "
                "with /bind."
            )
        await bot.send_message(chat.id, again.format(path=path))
        if bound.purpose is ChatPurpose.COMMUNITY:  # a council's group votes, it does not suggest
            await post_suggest_message(bot, chat.id, bound.community, pin=True)
    except TelegramAPIError as exc:
        # Added without the right to write: nothing to do until an admin lets it speak.
        log.info("cannot write to group %s: %s", chat.id, exc)


async def on_bot_removed(
    event: ChatMemberUpdated, bot: Bot, session: AsyncSession, fsm_storage: BaseStorage
) -> None:
    chat = event.chat
    await chats.note_membership(session, chat.id, chat.title or "", chat.type, is_member=False)
    await binding_context(fsm_storage, bot, chat.id).clear()


async def on_blocked_in_private(event: ChatMemberUpdated, session: AsyncSession) -> None:
    """The person blocked the bot: stop writing to them until they come back."""
    await mark_blocked(session, event.chat.id)


async def on_unblocked_in_private(
    event: ChatMemberUpdated,
    session: AsyncSession,
    council_poll_sender: PollSender | None = None,
    after_commit: AfterCommitHooks | None = None,
) -> None:
    """The person unblocked or restarted the bot: they hear from it again (notifications,
    council results). Says nothing: their next message is answered as usual."""
    if await mark_reachable(session, event.chat.id):
        log.info("person %s unblocked the bot", event.chat.id)
        # The council polls Telegram refused them meanwhile go out once this has committed.
        await send_owed_polls(session, event.chat.id, council_poll_sender, after_commit)


async def on_migrated(message: Message, session: AsyncSession) -> None:
    """Telegram upgraded a group to a supergroup, which has a new chat id: the binding, what
    the outbox still owes the group and its open council votes move there. Both service
    messages lead here, in either order; the second finds nothing left to move."""
    if message.migrate_to_chat_id is not None:
        old, new = message.chat.id, message.migrate_to_chat_id
    else:
        assert message.migrate_from_chat_id is not None
        old, new = message.migrate_from_chat_id, message.chat.id
    moved = await chats.migrate_chat(session, old, new, title=message.chat.title)
    if moved != chats.Migration():
        log.info("group %s is now supergroup %s: %s", old, new, moved)


async def cmd_bind(
    message: Message, bot: Bot, session: AsyncSession, fsm_storage: BaseStorage
) -> None:
    if not await sent_by_admin(message, bot):
        await message.reply(
            _("Only the group's admins can link this group to a community. Thank you!")
        )
        return
    bound = await bound_chat(session, message.chat.id)
    if bound is not None and bound.community is not None:
        await post_rebind_prompt(bot, bound, bound.community, session, fsm_storage)
        return
    await post_binding_prompt(bot, message.chat.id, session, fsm_storage)


async def cmd_suggest(message: Message, bot: Bot, session: AsyncSession) -> None:
    community = await bound_community(session, message.chat.id)
    if community is not None:
        await post_suggest_message(bot, message.chat.id, community, pin=False)
        return
    await reply_with_private_chat(
        message,
        bot,
        _(
            "This group is not linked to a community yet, so I don't know where a suggestion "
            "from here should go. A group admin can link it with /bind. You can also suggest "
            "in a private chat with me."
        ),
    )


async def cmd_help(message: Message, session: AsyncSession) -> None:
    chat = await bound_chat(session, message.chat.id)
    if chat is not None and chat.community is not None:
        where = linked_to_text(chat.purpose, await _path(session, chat.community))
    else:
        where = _("This group is not linked to a community yet.")
    lines = [
        _("/suggest — suggest a project for this community"),
        _("/bind — (admins) link this group to its community"),
        _("/lang — (admins) the language I speak in this group"),
    ]
    # Staff bind the council's group; a residents' group is not one, and its members would
    # only be told the command is not for them.
    if chat is None or chat.purpose is ChatPurpose.COUNCIL:
        lines.append(_("/bind council — (in the council's group) make it the council's group"))
    await message.reply(
        where
        + "\n\n"
        + "\n".join(lines)
        + "\n\n"
        + _("Everything else happens in a private chat with me.")
    )


async def cmd_group_lang(message: Message, bot: Bot) -> None:
    """/lang in a group: its admins choose the language the bot speaks there."""
    if await sent_by_admin(message, bot):
        await message.reply(
            _("Which language should I speak in this group?"),
            reply_markup=language_keyboard(GroupLangCb),
        )
        return
    await reply_with_private_chat(
        message,
        bot,
        _(
            "Only the group's admins can choose the language I speak in this group. Your own "
            "language is set with /lang in a private chat with me."
        ),
    )


async def on_group_language(
    callback: CallbackQuery,
    callback_data: GroupLangCb,
    bot: Bot,
    session: AsyncSession,
    i18n: I18n,
) -> None:
    message = callback.message
    locale = callback_data.locale
    if not isinstance(message, Message) or locale not in SUPPORTED_LOCALES:
        await stale(callback)
        return
    if not await is_admin(bot, message.chat.id, callback.from_user.id):
        await callback.answer(
            _("Only the group's admins can choose the language I speak here. Thank you!"),
            show_alert=True,
        )
        return
    person = await ensure_person(session, identity(callback.from_user))
    await chats.set_chat_locale(
        session,
        message.chat.id,
        locale,
        title=message.chat.title or "",
        chat_type=message.chat.type,
        chosen_by_person_id=person.id,
    )
    # The rest of this update is in the old language: say it in the new one.
    with i18n.use_locale(locale):
        await settle(
            callback,
            _("In this group I will speak {language} from now on.").format(
                language=LANGUAGE_NAMES[locale]
            ),
        )


async def reply_with_private_chat(message: Message, bot: Bot, text: str) -> None:
    """Answer `message` in its group with `text` and a button that opens a private chat with
    the bot, where what was asked for happens."""
    me = await bot.me()
    await message.reply(text, reply_markup=private_chat_keyboard(f"https://t.me/{me.username}"))


async def cmd_private_only(message: Message, bot: Bot) -> None:
    await reply_with_private_chat(message, bot, _("That works in a private chat with me."))


async def bind_group(
    callback: CallbackQuery,
    message: Message,
    session: AsyncSession,
    community: Community,
    purpose: ChatPurpose = ChatPurpose.COMMUNITY,
) -> None:
    """Bind the group of `message` (a binding prompt) to `community` for `purpose`, in the name
    of the person who pressed its button."""
    person = await ensure_person(session, identity(callback.from_user))
    await chats.bind_chat(
        session,
        message.chat.id,
        community,
        title=message.chat.title or "",
        chat_type=message.chat.type,
        bound_by_person_id=person.id,
        purpose=purpose,
    )


async def binding_press(
    callback: CallbackQuery, bot: Bot, fsm_storage: BaseStorage
) -> tuple[Message, FSMContext] | None:
    """The binding message pressed and where its group's binding step is remembered, if the
    press counts: on the group's current binding message, by one of its admins. Otherwise the
    press is answered here and None returned."""
    message = callback.message
    if not isinstance(message, Message):
        await stale(callback)
        return None
    context = binding_context(fsm_storage, bot, message.chat.id)
    if await context.get_value("message_id") != message.message_id:
        await stale(callback)
        return None
    if not await is_admin(bot, message.chat.id, callback.from_user.id):
        await callback.answer(
            _("Only the group's admins can choose the community. Thank you!"), show_alert=True
        )
        return None
    return message, context


async def on_bind_press(
    callback: CallbackQuery,
    callback_data: BindCb,
    bot: Bot,
    session: AsyncSession,
    fsm_storage: BaseStorage,
) -> None:
    pressed = await binding_press(callback, bot, fsm_storage)
    if pressed is None:
        return
    message, context = pressed
    bound = await bound_chat(session, message.chat.id)
    if callback_data.level is not OrgLevel.PICK:
        heading = await picker_heading(session, bound)
        view = await render_level(
            session, BindCb, callback_data.level, callback_data.id, callback_data.page, heading
        )
        if view is None:
            view = await render_level(session, BindCb, OrgLevel.DISTRICTS, 0, 0, heading)
        await callback.answer()
        if view is not None:
            markup = view.markup
            if bound is not None:  # a change: the admin may still keep the binding
                markup = with_keep_button(markup)
            with contextlib.suppress(TelegramBadRequest):
                await message.edit_text(view.text, reply_markup=markup)
        return
    community = await get_community(session, callback_data.id)
    if community is None:
        await callback.answer(_("That community is no longer available."), show_alert=True)
        return
    # Its buttons posted while it was linked to another community (as its residents' or its
    # council's group) now open the new one's form.
    buttons_follow = bound is not None and bound.community_id != community.id
    await bind_group(callback, message, session, community)
    text = (
        "✅ "
        + _("This group is now linked to {path}.").format(path=await _path(session, community))
        + "\n"
        + _("A group admin can change that with /bind.")
    )
    if buttons_follow:
        text += "\n\n" + _(
            "The “{button}” buttons posted here earlier now open the form for {community}."
        ).format(button=suggest_label(), community=quote(community.name))
    await settle(callback, text, answer=_("Linked."))
    if not (
        buttons_follow and await rename_pinned_suggest_message(bot, message.chat.id, community)
    ):
        await post_suggest_message(bot, message.chat.id, community, pin=True)
    # Last: if Telegram refused the message for now (429, a timeout), the route answers 503
    # and the press comes again, which must still find the picker's step to finish the job
    # (binding again to the same community only records the attempt).
    await context.clear()


async def on_keep_binding(
    callback: CallbackQuery, bot: Bot, session: AsyncSession, fsm_storage: BaseStorage
) -> None:
    """The keep button under /bind's question (or the picker it became): nothing changes."""
    pressed = await binding_press(callback, bot, fsm_storage)
    if pressed is None:
        return
    message, context = pressed
    await context.clear()
    bound = await bound_chat(session, message.chat.id)
    if bound is None or bound.community is None:
        # Unbound meanwhile (the community was removed): nothing to keep.
        await settle(callback, _("This group is not linked to a community yet."))
        return
    path = await _path(session, bound.community)
    await settle(
        callback,
        linked_to_text(bound.purpose, path) + "\n" + _("Nothing was changed."),
        answer=_("Nothing was changed."),
    )


def create_router() -> Router:
    """Two routers. The outer one takes the membership updates, the binding buttons and the
    upgrade's service messages; its own filters let in only group chats' messages and
    presses, so a private chat's update costs one check here, as before. The inner one,
    "groups", holds the commands: every message handler there needs a `Command`, so it turns
    away any other message with one `IsCommand` check."""
    router = Router(name="group-chats")
    in_group = F.chat.type.in_(GROUP_TYPES)
    router.message.filter(in_group)
    router.callback_query.filter(F.message.chat.type.in_(GROUP_TYPES))
    router.my_chat_member.register(on_bot_added, in_group, ChatMemberUpdatedFilter(JOIN_TRANSITION))
    router.my_chat_member.register(
        on_bot_removed, in_group, ChatMemberUpdatedFilter(LEAVE_TRANSITION)
    )
    private = F.chat.type == ChatType.PRIVATE
    router.my_chat_member.register(
        on_blocked_in_private, private, F.new_chat_member.status == ChatMemberStatus.KICKED
    )
    router.my_chat_member.register(
        on_unblocked_in_private, private, F.new_chat_member.status == ChatMemberStatus.MEMBER
    )
    router.message.register(on_migrated, MIGRATED)
    router.callback_query.register(on_bind_press, BindCb.filter())
    router.callback_query.register(on_keep_binding, KeepBindingCb.filter())
    router.callback_query.register(on_group_language, GroupLangCb.filter())

    commands = Router(name="groups")
    commands.message.filter(IsCommand())  # group chats only: the outer router's filter
    commands.message.register(cmd_bind, Command("bind"))
    commands.message.register(cmd_suggest, Command("suggest"))
    commands.message.register(cmd_help, Command("help", "start"))
    commands.message.register(cmd_group_lang, Command("lang"))
    commands.message.register(cmd_private_only, Command("my", "cancel"))
    router.include_router(commands)
    return router
