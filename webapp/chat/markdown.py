"""Answers as HTML: Markdown rendered by markdown-it (raw HTML off), then
sanitised by nh3 with a small allowlist. Both steps matter: markdown-it
escapes HTML written in the text and refuses `javascript:` links, and nh3
is the guarantee that whatever markdown-it emits (now or after an upgrade)
holds no script, event handler, style or foreign scheme.

Images are rendered as links: an answer must not make the browser fetch a
URL by itself (a model can be steered into putting data in one)."""
from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}, "code": {"class"}}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"
_LANGUAGE = re.compile(r"language-[A-Za-z0-9_+#.-]{1,40}")


def _render_image(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    alt = "".join(child.content for child in token.children or []) or "image"
    src = html.escape(str(token.attrGet("src") or ""), quote=True)
    return f'<a href="{src}">{html.escape(alt)}</a>'


def _markdown() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.enable(["table", "strikethrough"])
    parser.add_render_rule("image", _render_image)
    return parser


_PARSER = _markdown()


def _keep_attribute(tag: str, name: str, value: str) -> str | None:
    # A fenced block's language label only; any other class is dropped.
    if tag == "code" and name == "class":
        return value if _LANGUAGE.fullmatch(value) else None
    return value


def sanitize_html(fragment: str) -> str:
    """`fragment` reduced to the allowlist; links get rel=noopener… and open
    in a new tab (the chat keeps streaming)."""
    return nh3.clean(
        fragment,
        tags=TAGS,
        attributes=ATTRIBUTES,
        attribute_filter=_keep_attribute,
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties={"text-align"},
        strip_comments=True,
    )


def render_markdown(text: str) -> str:
    """Safe HTML for an answer's Markdown (fenced code, tables, lists…)."""
    if not text:
        return ""
    return sanitize_html(_PARSER.render(text))
