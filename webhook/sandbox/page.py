"""The /sandbox web chat: the page, and the JSON API it drives the emulator with.

A person picks a persona and acts (types, presses buttons, shares a location, sends a photo,
adds the bot to a group, blocks it); each act becomes an update delivered to the bot, and the
POST returns once the bot has handled it. The page polls /sandbox/api/chats/{id} for what
changed. Message text arrives as HTML rendered from Telegram entities with everything escaped.
The world (/sandbox/api/world) carries the programme's time zone, in which the page shows times.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from storage.settings import Settings
from webhook.sandbox import demo
from webhook.sandbox.emulator import PHOTO_MAX_BYTES, Emulator, SandboxError

__all__ = ["create_sandbox_router"]

_STATIC = {
    "sandbox.css": "text/css; charset=utf-8",
    "sandbox.js": "text/javascript; charset=utf-8",
}
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# Defence in depth behind the escaping: the page runs only its own script.
_PAGE_HEADERS = {
    **_NO_STORE,
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}


class _Act(BaseModel):
    persona: int


class _Text(_Act):
    text: str = Field(max_length=20000)
    reply_to: int | None = None
    # The person dismissed the reply a ForceReply opened: send a plain message.
    ignore_force_reply: bool = False


class _Press(_Act):
    message_id: int
    row: int = Field(ge=0)
    column: int = Field(ge=0)


class _KeyboardPress(_Act):
    row: int = Field(ge=0)
    column: int = Field(ge=0)


class _Location(_Act):
    latitude: float
    longitude: float


class _Vote(_Act):
    message_id: int
    option_ids: list[int] = Field(max_length=12)


class _BotAction(_Act):
    action: str = Field(pattern="^(add|promote|remove)$")


class _Block(BaseModel):
    blocked: bool


class _Link(BaseModel):
    url: str = Field(max_length=4096)


class _Start(BaseModel):
    payload: str | None = Field(default=None, max_length=64)


def _static(name: str) -> str:
    return (resources.files("webhook.sandbox") / "static" / name).read_text(encoding="utf-8")


def _refused(error: SandboxError) -> JSONResponse:
    return JSONResponse({"ok": False, "error": str(error)}, status_code=400, headers=_NO_STORE)


def _ok(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"ok": True, **body}, headers=_NO_STORE)


def _sent(result: dict[str, Any]) -> JSONResponse:
    """A message the persona sent: its id, and the HTTP status of its delivery to the bot."""
    return _ok({"message_id": result["message"]["message_id"], "status": result["status"]})


def _timezone(request: Request) -> str:
    """The programme's time zone (TIMEZONE), in which the page shows the times of messages.

    The app's runtime holds the settings; a bare router (the emulator's tests) has the default.
    """
    settings = getattr(getattr(request.app.state, "runtime", None), "settings", None)
    if isinstance(settings, Settings):
        return settings.timezone
    default: str = Settings.model_fields["timezone"].default
    return default


def create_sandbox_router(emulator: Emulator) -> APIRouter:
    """GET /sandbox and its API under /sandbox/api/ (sandbox mode only)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/sandbox")
    async def page() -> HTMLResponse:
        return HTMLResponse(_static("sandbox.html"), headers=_PAGE_HEADERS)

    @router.get("/sandbox/static/{name}")
    async def static(name: str) -> Response:
        media_type = _STATIC.get(name)
        if media_type is None:
            return Response(status_code=404)
        return Response(_static(name), media_type=media_type, headers=_NO_STORE)

    @router.get("/sandbox/api/world")
    async def world(request: Request) -> JSONResponse:
        latitude, longitude = demo.DEMO_LOCATION
        return _ok(
            {
                "bot": emulator.bot_user,
                "timezone": _timezone(request),
                "personas": emulator.personas(),
                "persona_groups": [
                    {"id": group, "zh": zh, "en": en} for group, zh, en in demo.PERSONA_GROUPS
                ],
                "location": {"latitude": latitude, "longitude": longitude},
            }
        )

    @router.get("/sandbox/api/personas/{persona}/chats")
    async def chats(persona: int) -> JSONResponse:
        try:
            return _ok({"chats": emulator.chats_for(persona), "personas": emulator.personas()})
        except SandboxError as error:
            return _refused(error)

    @router.get("/sandbox/api/chats/{chat_id}")
    async def view(
        chat_id: int,
        persona: Annotated[int, Query()],
        since: Annotated[int, Query(ge=0)] = 0,
    ) -> JSONResponse:
        try:
            return _ok(emulator.view(persona, chat_id, since))
        except SandboxError as error:
            return _refused(error)

    @router.post("/sandbox/api/chats/{chat_id}/messages")
    async def send(chat_id: int, body: _Text) -> JSONResponse:
        try:
            result = await emulator.user_send_text(
                body.persona,
                chat_id,
                body.text,
                reply_to=body.reply_to,
                answer_force_reply=not body.ignore_force_reply,
            )
        except SandboxError as error:
            return _refused(error)
        return _sent(result)

    @router.post("/sandbox/api/chats/{chat_id}/press")
    async def press(chat_id: int, body: _Press) -> JSONResponse:
        try:
            result = await emulator.user_press_button(
                body.persona, chat_id, body.message_id, body.row, body.column
            )
        except SandboxError as error:
            return _refused(error)
        return _ok(result.as_json())

    @router.post("/sandbox/api/chats/{chat_id}/keyboard")
    async def keyboard(chat_id: int, body: _KeyboardPress) -> JSONResponse:
        try:
            result = await emulator.user_press_keyboard_button(
                body.persona, chat_id, body.row, body.column
            )
        except SandboxError as error:
            return _refused(error)
        return _sent(result)

    @router.post("/sandbox/api/chats/{chat_id}/location")
    async def location(chat_id: int, body: _Location) -> JSONResponse:
        try:
            result = await emulator.user_send_location(
                body.persona, chat_id, body.latitude, body.longitude
            )
        except SandboxError as error:
            return _refused(error)
        return _sent(result)

    @router.post("/sandbox/api/chats/{chat_id}/photo")
    async def photo(
        chat_id: int,
        request: Request,
        persona: Annotated[int, Query()],
        caption: Annotated[str, Query(max_length=4096)] = "",
        name: Annotated[str | None, Query(max_length=255)] = None,
    ) -> JSONResponse:
        # The page sends the file's bytes as the body (no multipart parser is installed).
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > PHOTO_MAX_BYTES:
                return _refused(SandboxError("photos are limited to 10 MB"))
        try:
            result = await emulator.user_send_photo(
                persona, chat_id, bytes(data), caption=caption, file_name=name
            )
        except SandboxError as error:
            return _refused(error)
        return _sent(result)

    @router.post("/sandbox/api/chats/{chat_id}/vote")
    async def vote(chat_id: int, body: _Vote) -> JSONResponse:
        try:
            result = await emulator.user_vote(
                body.persona, chat_id, body.message_id, body.option_ids
            )
        except SandboxError as error:
            return _refused(error)
        return _ok({"status": result["status"]})

    @router.post("/sandbox/api/chats/{chat_id}/bot")
    async def bot_membership(chat_id: int, body: _BotAction) -> JSONResponse:
        actions = {
            "add": emulator.user_add_bot,
            "promote": emulator.user_promote_bot,
            "remove": emulator.user_remove_bot,
        }
        try:
            result = await actions[body.action](body.persona, chat_id)
        except SandboxError as error:
            return _refused(error)
        return _ok({"status": result["status"]})

    @router.post("/sandbox/api/personas/{persona}/start")
    async def start(persona: int, body: Annotated[_Start, Body()]) -> JSONResponse:
        try:
            result = await emulator.user_start(persona, body.payload)
        except SandboxError as error:
            return _refused(error)
        return _ok({"status": result["status"], "chat_id": persona})

    @router.post("/sandbox/api/personas/{persona}/block")
    async def block(persona: int, body: _Block) -> JSONResponse:
        try:
            result = await emulator.user_set_blocked(persona, body.blocked)
        except SandboxError as error:
            return _refused(error)
        return _ok({"status": result["status"]})

    @router.post("/sandbox/api/personas/{persona}/link")
    async def link(persona: int, body: _Link) -> JSONResponse:
        try:
            result = await emulator.user_open_link(persona, body.url)
        except SandboxError as error:
            return _refused(error)
        return _ok(result)

    @router.get("/sandbox/api/files/{file_id}")
    async def file(file_id: str) -> Response:
        stored = emulator.file(file_id)
        if stored is None:
            return Response(status_code=404)
        headers = dict(_NO_STORE)
        media_type = stored.mime
        if not media_type.startswith("image/"):
            # Never let an uploaded file render as a page of this origin.
            media_type = "application/octet-stream"
            headers["Content-Disposition"] = "attachment"
        headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return Response(stored.data, media_type=media_type, headers=headers)

    @router.get("/sandbox/api/log")
    async def activity() -> JSONResponse:
        return _ok(
            {
                "log": list(emulator.log)[-100:],
                "updates": list(emulator.delivered)[-20:],
            }
        )

    return router
