"""Telegram's HTML formatting: text and entities both ways, refusing what Telegram refuses.

`parse_html` follows TDLib's parser (the code behind the Bot API's parse_mode=HTML): the same
tags, the same leniency (an unknown `&name;` stays literal text) and the same error messages
with byte offsets. `render_html` turns text and entities back into safe HTML for the sandbox's
web chat: every character of the text is escaped, so nothing a person typed can inject markup.
Offsets and lengths are in UTF-16 code units, as in the Bot API.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EntityParseError",
    "detect_entities",
    "merge_entities",
    "parse_html",
    "render_html",
    "sort_entities",
    "trim_text",
    "utf16_len",
]

_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "tg-time",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_SPACE = frozenset(b" \t\r\n\v\f\0")
_NAMED = {b"lt": "<", b"gt": ">", b"amp": "&", b"quot": '"'}
_SIMPLE = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}


class EntityParseError(ValueError):
    """The text is not Telegram-HTML; the message is TDLib's (after "can't parse entities: ")."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


@dataclass(slots=True)
class _Open:
    tag: str
    argument: str
    offset: int  # UTF-16 offset in the result
    result_pos: int  # byte position in the result


def _at(data: bytes, index: int) -> int:
    # Past the end reads as NUL, like the C string TDLib walks.
    return data[index] if index < len(data) else 0


def _is_space(byte: int) -> bool:
    return byte in _SPACE


def _is_alnum(byte: int) -> bool:
    return 48 <= byte <= 57 or 65 <= byte <= 90 or 97 <= byte <= 122


def _decode_reference(data: bytes, pos: int) -> tuple[int, int]:
    """(code point, position after it) of the character reference at pos, or (0, pos)."""
    end = pos + 1
    code = 0
    if _at(data, pos + 1) == ord("#"):
        end += 1
        if _at(data, pos + 2) == ord("x"):
            end += 1
            while _at(data, end) and chr(data[end]) in "0123456789abcdefABCDEF":
                code = code * 16 + int(chr(data[end]), 16)
                end += 1
        else:
            while 48 <= _at(data, end) <= 57:
                code = code * 10 + data[end] - 48
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while 65 <= _at(data, end) <= 90 or 97 <= _at(data, end) <= 122:
            end += 1
        named = _NAMED.get(data[pos + 1 : end])
        if named is None:
            return 0, pos  # an unsupported named reference stays literal text
        code = ord(named)
    return code, end + 1 if _at(data, end) == ord(";") else end


def _utf8(code: int) -> bytes:
    return chr(code).encode("utf-8", "surrogatepass")


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram-HTML to (plain text, entities); raises EntityParseError like Telegram."""
    data = text.encode("utf-8", "surrogatepass")
    result = bytearray()
    entities: list[dict[str, Any]] = []
    nested: list[_Open] = []
    utf16 = 0
    surrogate = False
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c == ord("&"):
            code, after = _decode_reference(data, i)
            if code:
                utf16 += 2 if code > 0xFFFF else 1
                surrogate |= 0xD800 <= code <= 0xDFFF
                result += _utf8(code)
                i = after
                continue
        if c != ord("<"):
            if c & 0xC0 != 0x80:  # the first byte of a character
                utf16 += 2 if c >= 0xF0 else 1
            result.append(c)
            i += 1
            continue
        begin = i
        i += 1
        if _at(data, i) != ord("/"):
            opened, i = _start_tag(data, begin, i, utf16, len(result))
            nested.append(opened)
            i += 1
            continue
        if not nested:
            raise EntityParseError(f"Unexpected end tag at byte offset {begin}")
        while not _is_space(_at(data, i)) and _at(data, i) != ord(">"):
            i += 1
        end_tag = data[begin + 2 : i].decode("utf-8", "replace").lower()
        while _at(data, i) and _is_space(_at(data, i)):
            i += 1
        if _at(data, i) != ord(">"):
            raise EntityParseError(f"Unclosed end tag at byte offset {begin}")
        opened = nested[-1]
        if end_tag and end_tag != opened.tag:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {begin}, expected "</{opened.tag}>", '
                f'found "</{end_tag}>"'
            )
        if utf16 > opened.offset:
            _add_entity(entities, opened, utf16 - opened.offset, bytes(result))
        nested.pop()
        i += 1
    if nested:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{nested[-1].tag}"')
    if surrogate:
        raise EntityParseError(
            "Text contains invalid Unicode characters after decoding HTML entities, "
            "check for unmatched surrogate code units"
        )
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)  # a language counts only inside <pre>
    return result.decode("utf-8"), sort_entities(entities)


def _start_tag(data: bytes, begin: int, i: int, utf16: int, result_pos: int) -> tuple[_Open, int]:
    """Read a start tag from its name on; returns it and the index of its closing '>'."""
    while not _is_space(_at(data, i)) and _at(data, i) != ord(">"):
        i += 1
    if _at(data, i) == 0:
        raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
    tag = data[begin + 1 : i].decode("utf-8", "replace").lower()
    if tag not in _TAGS:
        raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
    argument = ""
    while _at(data, i) != ord(">"):
        while _at(data, i) and _is_space(_at(data, i)):
            i += 1
        if _at(data, i) == ord(">"):
            break
        attr_begin = i
        while not _is_space(_at(data, i)) and _at(data, i) not in b"=>/\"'":
            i += 1
        attribute = data[attr_begin:i].decode("utf-8", "replace")
        if not attribute:
            raise EntityParseError(
                f'Empty attribute name in the tag "{tag}" at byte offset {begin}'
            )
        while _at(data, i) and _is_space(_at(data, i)):
            i += 1
        if _at(data, i) != ord("="):
            if _at(data, i) == 0:
                raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
            if tag == "blockquote" and attribute == "expandable":
                argument = "1"
            continue
        i += 1
        while _at(data, i) and _is_space(_at(data, i)):
            i += 1
        if _at(data, i) == 0:
            raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
        value, i = _attribute_value(data, i)
        if _at(data, i) == 0:
            raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
        if (tag, attribute) in {("a", "href"), ("tg-emoji", "emoji-id"), ("tg-time", "unix")}:
            argument = value
        elif tag == "code" and attribute == "class" and value.startswith("language-"):
            argument = value.removeprefix("language-")
        elif tag == "span" and attribute == "class" and value.startswith("tg-"):
            argument = value.removeprefix("tg-")
        elif tag == "blockquote" and attribute == "expandable":
            argument = "1"
    if tag == "span" and argument != "spoiler":
        raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
    return _Open(tag, argument, utf16, result_pos), i


def _attribute_value(data: bytes, i: int) -> tuple[str, int]:
    quote = _at(data, i)
    if quote not in (ord("'"), ord('"')):
        # A name token: letters, digits, periods, hyphens; not case sensitive.
        begin = i
        while _is_alnum(_at(data, i)) or _at(data, i) in (ord("."), ord("-")):
            i += 1
        if not _is_space(_at(data, i)) and _at(data, i) != ord(">"):
            raise EntityParseError(f"Unexpected end of name token at byte offset {begin}")
        return data[begin:i].decode("ascii").lower(), i
    i += 1
    value = bytearray()
    while _at(data, i) != quote and _at(data, i):
        if data[i] == ord("&"):
            code, after = _decode_reference(data, i)
            if code:
                value += _utf8(code)
                i = after
                continue
        value.append(data[i])
        i += 1
    if _at(data, i) == quote:
        i += 1
    return value.decode("utf-8", "replace"), i


def _add_entity(entities: list[dict[str, Any]], opened: _Open, length: int, result: bytes) -> None:
    offset = opened.offset
    tag = opened.tag
    last = entities[-1] if entities else None
    same_span = last is not None and last["offset"] == offset and last["length"] == length
    if tag in _SIMPLE:
        entities.append({"type": _SIMPLE[tag], "offset": offset, "length": length})
    elif tag == "tg-emoji":
        if not opened.argument.isdigit() or not 0 < int(opened.argument) < 2**63:
            raise EntityParseError("Invalid custom emoji identifier specified")
        entities.append(
            {
                "type": "custom_emoji",
                "offset": offset,
                "length": length,
                "custom_emoji_id": opened.argument,
            }
        )
    elif tag == "tg-time":
        if opened.argument.isdigit():
            entities.append(
                {
                    "type": "date_time",
                    "offset": offset,
                    "length": length,
                    "unix_time": int(opened.argument),
                }
            )
    elif tag == "a":
        url = opened.argument or result[opened.result_pos :].decode("utf-8", "replace")
        user_id = _mention_user_id(url)
        if user_id is not None:
            entities.append(
                {
                    "type": "text_mention",
                    "offset": offset,
                    "length": length,
                    "user": {"id": user_id, "is_bot": False, "first_name": ""},
                }
            )
        elif (checked := checked_url(url)) is not None:
            entities.append(
                {"type": "text_link", "offset": offset, "length": length, "url": checked}
            )
    elif tag == "pre":
        if last is not None and same_span and last["type"] == "code" and last.get("language"):
            last["type"] = "pre"
        else:
            entities.append({"type": "pre", "offset": offset, "length": length})
    elif tag == "code":
        if last is not None and same_span and last["type"] == "pre" and opened.argument:
            last["language"] = opened.argument
        else:
            code: dict[str, Any] = {"type": "code", "offset": offset, "length": length}
            if opened.argument:
                code["language"] = opened.argument
            entities.append(code)
    elif tag == "blockquote":
        kind = "expandable_blockquote" if opened.argument else "blockquote"
        entities.append({"type": kind, "offset": offset, "length": length})


_MENTION_LINK = re.compile(r"^tg://user\?id=(\d{1,15})$", re.IGNORECASE)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_HOSTLIKE = re.compile(r"^[\w-]+(\.[\w-]+)*\.[a-zA-Z]{2,}(:\d+)?([/?#].*)?$")


def _mention_user_id(url: str) -> int | None:
    match = _MENTION_LINK.match(url.strip())
    return int(match.group(1)) if match else None


def checked_url(url: str) -> str | None:
    """The link as Telegram keeps it, or None when Telegram would drop it (javascript:, junk)."""
    url = url.strip()
    if not url or any(ch in url for ch in " \n\t<>\"'"):
        return None
    scheme_match = _SCHEME.match(url)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme in ("http", "https", "ftp"):
            rest = url[len(scheme) + 1 :]
            return url if rest.startswith("//") and len(rest) > 2 else None
        if scheme in ("tg", "ton", "tonsite", "mailto"):
            return url
        if not _HOSTLIKE.match(url):  # "example.com:8080/x" has no scheme but a port
            return None
    if _HOSTLIKE.match(url):
        return "http://" + url
    return None


_ORDER = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 1,
    "text_link": 2,
    "text_mention": 2,
    "url": 2,
    "email": 2,
    "mention": 2,
    "bot_command": 2,
    "hashtag": 2,
    "cashtag": 2,
    "phone_number": 2,
    "bold": 3,
    "italic": 4,
    "underline": 5,
    "strikethrough": 6,
    "spoiler": 7,
    "code": 8,
    "custom_emoji": 9,
    "date_time": 9,
}


def sort_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Telegram's order: by offset, longer first, then outer kinds before inner ones."""
    return sorted(entities, key=lambda e: (e["offset"], -e["length"], _ORDER.get(e["type"], 10)))


def _utf16_index(text: str) -> list[int]:
    """UTF-16 offset of each code point index (plus one past the end)."""
    offsets = [0] * (len(text) + 1)
    position = 0
    for index, ch in enumerate(text):
        offsets[index] = position
        position += 2 if ord(ch) > 0xFFFF else 1
    offsets[len(text)] = position
    return offsets


def trim_text(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Strip surrounding whitespace as Telegram does, moving and clipping entities with it."""
    stripped_left = text.lstrip()
    left = utf16_len(text) - utf16_len(stripped_left)
    result = stripped_left.rstrip()
    total = utf16_len(result)
    kept: list[dict[str, Any]] = []
    for entity in entities:
        start = max(entity["offset"] - left, 0)
        end = min(entity["offset"] + entity["length"] - left, total)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return result, kept


_AUTO = re.compile(
    r"(?P<url>\b(?:https?://|www\.)[^\s<>\"'“”‘’，。！？、]+[^\s<>\"'“”‘’，。！？、.,;:!?)\]])"
    r"|(?P<email>\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-zA-Z]{2,}\b)"
    r"|(?P<bot_command>(?<![\w/<>])/[a-zA-Z0-9_]{1,32}(?:@[a-zA-Z][a-zA-Z0-9_]{3,31})?(?![\w/<>]))"
    r"|(?P<mention>(?<![\w@])@[a-zA-Z][a-zA-Z0-9_]{3,31}\b)"
    r"|(?P<hashtag>(?<![\w#])#[^\W\d_][\w]{0,255})"
)


def detect_entities(text: str) -> list[dict[str, Any]]:
    """Entities Telegram finds by itself in any text: links, e-mails, /commands, @names, #tags."""
    offsets = _utf16_index(text)
    found: list[dict[str, Any]] = []
    for match in _AUTO.finditer(text):
        kind = match.lastgroup
        if kind is None:
            continue
        start, end = match.span()
        found.append(
            {"type": kind, "offset": offsets[start], "length": offsets[end] - offsets[start]}
        )
    return found


def merge_entities(
    explicit: list[dict[str, Any]], detected: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Add found entities that do not cross explicit ones or sit inside code, pre or links."""
    blocking = {"code", "pre", "text_link", "text_mention", "url", "email"}
    merged = list(explicit)
    for entity in detected:
        start, end = entity["offset"], entity["offset"] + entity["length"]
        clash = False
        for other in explicit:
            o_start, o_end = other["offset"], other["offset"] + other["length"]
            if end <= o_start or o_end <= start:
                continue
            inside = o_start <= start and end <= o_end
            if other["type"] in blocking or not inside:
                clash = True
                break
        if not clash:
            merged.append(entity)
    return sort_entities(merged)


# --- rendering for the web chat -------------------------------------------------------------

_SAFE_SCHEMES = ("http://", "https://", "tg://", "mailto:")


def _safe_href(url: str) -> str | None:
    lowered = url.strip().lower()
    return url.strip() if lowered.startswith(_SAFE_SCHEMES) else None


def _open_tag(entity: dict[str, Any], segment: str) -> tuple[str, str]:
    kind = entity["type"]
    simple = {
        "bold": "b",
        "italic": "i",
        "underline": "u",
        "strikethrough": "s",
        "code": "code",
    }
    if kind in simple:
        tag = simple[kind]
        return f"<{tag}>", f"</{tag}>"
    if kind == "spoiler":
        return '<span class="tg-spoiler" title="spoiler">', "</span>"
    if kind == "blockquote":
        return "<blockquote>", "</blockquote>"
    if kind == "expandable_blockquote":
        return '<blockquote class="expandable">', "</blockquote>"
    if kind == "pre":
        language = entity.get("language")
        if language:
            lang = html.escape(str(language), quote=True)
            return f'<pre data-language="{lang}"><code>', "</code></pre>"
        return "<pre><code>", "</code></pre>"
    if kind in ("text_link", "url", "email"):
        if kind == "text_link":
            target = str(entity.get("url", ""))
        elif kind == "email":
            target = "mailto:" + segment
        else:
            target = segment if "://" in segment else "http://" + segment
        href = _safe_href(target)
        if href is None:
            return '<span class="tg-link">', "</span>"
        attr = html.escape(href, quote=True)
        return (
            f'<a class="tg-link" href="{attr}" target="_blank" rel="noopener noreferrer">',
            "</a>",
        )
    if kind == "bot_command":
        command = html.escape(segment, quote=True)
        return f'<a class="tg-command" href="#" data-command="{command}">', "</a>"
    if kind in ("mention", "text_mention", "hashtag", "cashtag", "phone_number"):
        return f'<span class="tg-{kind.replace("_", "-")}">', "</span>"
    return "<span>", "</span>"


def render_html(text: str, entities: list[dict[str, Any]] | None) -> str:
    """Text and entities to HTML for the web chat; all text escaped, links only http(s)/tg/mailto.

    Entities that cross each other (only possible when a bot passes its own list) are split so
    that the output is always well nested.
    """
    units = text.encode("utf-16-le", "surrogatepass")
    total = len(units) // 2

    def piece(start: int, end: int) -> str:
        return units[2 * start : 2 * end].decode("utf-16-le", "replace")

    queue: list[tuple[int, int, int, dict[str, Any]]] = []
    for entity in entities or []:
        try:
            start = max(int(entity["offset"]), 0)
            end = min(start + int(entity["length"]), total)
            kind = str(entity["type"])
        except (KeyError, TypeError, ValueError):
            continue
        if end > start:
            queue.append((start, end, _ORDER.get(kind, 10), entity))
    queue.sort(key=lambda item: (item[0], -(item[1] - item[0]), item[2]))
    out: list[str] = []
    stack: list[tuple[int, str]] = []  # (end, closing tag)
    position = 0
    while queue or stack:
        next_start = queue[0][0] if queue else total + 1
        if stack and stack[-1][0] <= next_start:
            end, closing = stack.pop()
            out.append(html.escape(piece(position, end), quote=False))
            out.append(closing)
            position = end
            continue
        start, end, order, entity = queue.pop(0)
        out.append(html.escape(piece(position, start), quote=False))
        position = start
        if stack and end > stack[-1][0]:
            # Crosses the enclosing entity: close it there and carry the rest over.
            remainder = (stack[-1][0], end, order, entity)
            queue.append(remainder)
            queue.sort(key=lambda item: (item[0], -(item[1] - item[0]), item[2]))
            end = stack[-1][0]
        opening, closing = _open_tag(entity, piece(start, end))
        out.append(opening)
        stack.append((end, closing))
    out.append(html.escape(piece(position, total), quote=False))
    return "".join(out)
