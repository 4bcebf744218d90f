"""A minimal stand-in for Telegram's Bot API server, for the webhook benchmark.

It answers every method at once with a plausible result, so that the bot's outgoing calls
cost what an HTTP round trip costs and nothing more: `python -m bench.stub_api --port P`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import Any

from aiohttp import web

BOT_ID = 7000000002
BOT_USER = {
    "id": BOT_ID,
    "is_bot": True,
    "first_name": "Minsheng bench",
    "username": "minsheng_bench_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
# Methods whose result is the Message they sent or edited.
MESSAGE_METHODS = frozenset(
    {
        "sendmessage",
        "sendphoto",
        "sendmediagroup",
        "senddocument",
        "sendlocation",
        "sendpoll",
        "copymessage",
        "forwardmessage",
        "editmessagetext",
        "editmessagecaption",
        "editmessagereplymarkup",
        "stoppoll",
    }
)


def _chat(chat_id: int | str | None) -> dict[str, Any]:
    try:
        ident = int(chat_id or 0)
    except ValueError:  # @channelusername
        return {"id": -1000000000001, "type": "supergroup", "title": str(chat_id)}
    if ident > 0:
        return {"id": ident, "type": "private", "first_name": "Resident"}
    return {"id": ident, "type": "supergroup", "title": "Community group"}


async def _params(request: web.Request) -> Any:
    """The call's parameters: a JSON object (the bot's usual body), or a multipart/urlencoded
    form (uploads, and other clients)."""
    if not request.can_read_body:
        return {}
    if request.content_type == "application/json":
        params = await request.json()
        return params if isinstance(params, dict) else {}
    return await request.post()


class Stub:
    def __init__(self) -> None:
        self.message_ids = itertools.count(1_000_000)
        self.calls: dict[str, int] = {}

    def result(self, method: str, form: Any) -> Any:
        if method in MESSAGE_METHODS:
            if method.startswith("edit") and form.get("inline_message_id"):
                return True
            if method == "sendmediagroup":
                return [self._message(form)]
            if method == "stoppoll":
                return {
                    "id": "1",
                    "question": "?",
                    "options": [],
                    "total_voter_count": 0,
                    "is_closed": True,
                    "is_anonymous": False,
                    "type": "regular",
                    "allows_multiple_answers": False,
                }
            return self._message(form)
        if method == "getme":
            return BOT_USER
        if method == "getchatmember":
            user_id = int(form.get("user_id") or 1)
            return {
                "status": "member",
                "user": {"id": user_id, "is_bot": False, "first_name": "Resident"},
            }
        if method == "getchatadministrators":
            return []
        if method == "getchat":
            return {**_chat(form.get("chat_id")), "accent_color_id": 0, "max_reaction_count": 11}
        if method == "getmycommands":
            return []
        if method == "getwebhookinfo":
            return {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        if method == "getupdates":
            return []
        if method == "createchatinvitelink":
            return {
                "invite_link": "https://t.me/+bench",
                "creator": BOT_USER,
                "creates_join_request": False,
                "is_primary": False,
                "is_revoked": False,
            }
        return True  # answerCallbackQuery, setMyCommands, deleteMessage, sendChatAction, ...

    def _message(self, form: Any) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": next(self.message_ids),
            "date": int(time.time()),
            "chat": _chat(form.get("chat_id")),
            "from": BOT_USER,
        }
        text = form.get("text") or form.get("caption")
        message["text"] = text if isinstance(text, str) else "…"
        return message

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"].lower()
        self.calls[method] = self.calls.get(method, 0) + 1
        form = await _params(request)
        body = json.dumps({"ok": True, "result": self.result(method, form)}, ensure_ascii=False)
        return web.Response(text=body, content_type="application/json")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.calls)


def create_stub_app() -> web.Application:
    stub = Stub()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", stub.handle)
    app.router.add_get("/bot{token}/{method}", stub.handle)
    app.router.add_get("/stats", stub.stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop  # uvicorn[standard] brings it

    web.run_app(
        create_stub_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
