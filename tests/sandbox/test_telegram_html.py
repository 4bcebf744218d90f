"""Telegram-HTML parsing as Telegram does it (TDLib's rules and messages), and safe rendering."""

from __future__ import annotations

import pytest

from webhook.sandbox.telegram_html import (
    EntityParseError,
    checked_url,
    detect_entities,
    merge_entities,
    parse_html,
    render_html,
    trim_text,
    utf16_len,
)


def test_nested_tags_give_entities_with_offsets() -> None:
    text, entities = parse_html("<b>bold <i>both</i></b> plain <u>under</u>")
    assert text == "bold both plain under"
    assert entities == [
        {"type": "bold", "offset": 0, "length": 9},
        {"type": "italic", "offset": 5, "length": 4},
        {"type": "underline", "offset": 16, "length": 5},
    ]


@pytest.mark.parametrize(
    ("tag", "kind"),
    [
        ("b", "bold"),
        ("strong", "bold"),
        ("i", "italic"),
        ("em", "italic"),
        ("u", "underline"),
        ("ins", "underline"),
        ("s", "strikethrough"),
        ("strike", "strikethrough"),
        ("del", "strikethrough"),
        ("tg-spoiler", "spoiler"),
        ("code", "code"),
        ("pre", "pre"),
        ("blockquote", "blockquote"),
    ],
)
def test_every_simple_tag(tag: str, kind: str) -> None:
    assert parse_html(f"x<{tag}>y</{tag}>") == ("xy", [{"type": kind, "offset": 1, "length": 1}])


def test_attributes() -> None:
    assert parse_html('<a href="https://example.com/?a=1&amp;b=2">link</a>')[1] == [
        {"type": "text_link", "offset": 0, "length": 4, "url": "https://example.com/?a=1&b=2"}
    ]
    assert parse_html('<span class="tg-spoiler">s</span>')[1] == [
        {"type": "spoiler", "offset": 0, "length": 1}
    ]
    assert parse_html("<blockquote expandable>q</blockquote>")[1] == [
        {"type": "expandable_blockquote", "offset": 0, "length": 1}
    ]
    assert parse_html('<pre><code class="language-python">x = 1</code></pre>')[1] == [
        {"type": "pre", "offset": 0, "length": 5, "language": "python"}
    ]
    # A language counts only inside <pre>.
    assert parse_html('<code class="language-python">x</code>')[1] == [
        {"type": "code", "offset": 0, "length": 1}
    ]
    assert parse_html('<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>')[1] == [
        {
            "type": "custom_emoji",
            "offset": 0,
            "length": 2,
            "custom_emoji_id": "5368324170671202286",
        }
    ]
    mention = parse_html('<a href="tg://user?id=10001">张伟</a>')[1][0]
    assert mention["type"] == "text_mention" and mention["user"]["id"] == 10001


def test_links_telegram_would_not_keep_are_dropped() -> None:
    assert parse_html('<a href="javascript:alert(1)">x</a>') == ("x", [])
    assert parse_html('<a href="example.com">x</a>')[1][0]["url"] == "http://example.com"
    assert checked_url("https://t.me/bot?start=abc") == "https://t.me/bot?start=abc"
    assert checked_url("tg://resolve?domain=bot") == "tg://resolve?domain=bot"
    assert checked_url("not a url") is None


def test_character_references() -> None:
    assert (
        parse_html("&lt;b&gt; &amp; &quot;q&quot; &#39;&#x27; &#20013;")[0] == "<b> & \"q\" '' 中"
    )
    # Telegram keeps references it does not know, and a bare ampersand, as text.
    assert parse_html("&foo; Q&A &nbsp;") == ("&foo; Q&A &nbsp;", [])
    assert parse_html("&lt") == ("<", [])


def test_offsets_count_utf16_code_units() -> None:
    text, entities = parse_html("😀<b>中文</b>😀<i>x</i>")
    assert text == "😀中文😀x"
    assert entities == [
        {"type": "bold", "offset": 2, "length": 2},
        {"type": "italic", "offset": 6, "length": 1},
    ]
    assert utf16_len("😀中") == 3
    text, entities = parse_html("<b>&#x1F600;</b>")
    assert (text, entities) == ("😀", [{"type": "bold", "offset": 0, "length": 2}])


def test_empty_tags_make_no_entity() -> None:
    assert parse_html("a<b></b>c") == ("ac", [])


@pytest.mark.parametrize(
    ("html", "message"),
    [
        ("<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 0'),
        ("Hello, <br>world", 'Unsupported start tag "br" at byte offset 7'),
        ("中文<foo>", 'Unsupported start tag "foo" at byte offset 6'),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("1<2", "Unclosed start tag at byte offset 1"),
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</i>", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b>x</b", "Unclosed end tag at byte offset 4"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ('<a ="x">y</a>', 'Empty attribute name in the tag "a" at byte offset 0'),
        ("<a href=x/>y</a>", "Unexpected end of name token at byte offset 8"),
        ("<a href", 'Unclosed start tag "a" at byte offset 0'),
        ('<a href="x"', "Unclosed start tag at byte offset 0"),
        ('<tg-emoji emoji-id="x">y</tg-emoji>', "Invalid custom emoji identifier specified"),
        (
            "&#xD800;",
            "Text contains invalid Unicode characters after decoding HTML entities, "
            "check for unmatched surrogate code units",
        ),
    ],
)
def test_malformed_html_is_refused_like_telegram(html: str, message: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_html(html)
    assert str(caught.value) == message


def test_trim_moves_entities() -> None:
    text, entities = trim_text("  \n<x>  ", [{"type": "bold", "offset": 2, "length": 4}])
    assert text == "<x>"
    assert entities == [{"type": "bold", "offset": 0, "length": 3}]


def test_detected_entities() -> None:
    text = "😀 /start@minsheng_sandbox_bot 看 https://t.me/x?start=a @lina_xinsha #新沙 a@b.cn"
    kinds = {
        (
            e["type"],
            text.encode("utf-16-le")[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode(
                "utf-16-le"
            ),
        )
        for e in detect_entities(text)
    }
    assert kinds == {
        ("bot_command", "/start@minsheng_sandbox_bot"),
        ("url", "https://t.me/x?start=a"),
        ("mention", "@lina_xinsha"),
        ("hashtag", "#新沙"),
        ("email", "a@b.cn"),
    }
    # Not commands: an HTML-looking end tag, a path.
    assert detect_entities("<b>x</b> a/b") == []


def test_merge_keeps_explicit_entities_and_skips_code() -> None:
    explicit = [{"type": "code", "offset": 0, "length": 6}]
    assert merge_entities(explicit, detect_entities("/start now")) == explicit


def test_render_escapes_everything() -> None:
    html = render_html(
        '<script>alert("x")</script> & <b>', [{"type": "bold", "offset": 0, "length": 8}]
    )
    assert html == '<b>&lt;script&gt;</b>alert("x")&lt;/script&gt; &amp; &lt;b&gt;'
    assert "<script" not in html


def test_render_links_only_safe_schemes() -> None:
    html = render_html(
        "x", [{"type": "text_link", "offset": 0, "length": 1, "url": "javascript:alert(1)"}]
    )
    assert "javascript" not in html and "<a" not in html
    html = render_html(
        "go", [{"type": "text_link", "offset": 0, "length": 2, "url": 'https://e.com/"><x'}]
    )
    assert 'href="https://e.com/&quot;&gt;&lt;x"' in html


def test_render_nests_and_splits_crossing_entities() -> None:
    text, entities = parse_html("<b>a<i>b</i></b>😀<pre>c</pre><blockquote>q</blockquote>")
    assert render_html(text, entities) == (
        "<b>a<i>b</i></b>😀<pre><code>c</code></pre><blockquote>q</blockquote>"
    )
    crossing = [
        {"type": "bold", "offset": 0, "length": 4},
        {"type": "italic", "offset": 2, "length": 4},
    ]
    assert render_html("abcdef", crossing) == "<b>ab<i>cd</i></b><i>ef</i>"


def test_render_survives_bad_entities() -> None:
    assert render_html("ab", [{"type": "bold", "offset": 5, "length": 3}, {"offset": 0}]) == "ab"
    assert render_html("😀", [{"type": "bold", "offset": 1, "length": 1}]) in (
        "\ufffd<b>\ufffd</b>",
        "�<b>�</b>",
    )
