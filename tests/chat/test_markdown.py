"""Answers' Markdown → HTML: rendered, and safe whatever the model writes."""
from __future__ import annotations

from html import escape
from html.parser import HTMLParser

import pytest

from webapp.chat.markdown import render_markdown, sanitize_html


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """The start tags of `html` with their attributes, as a browser parses them."""
    found: list[tuple[str, dict[str, str | None]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, dict(attrs)))

    Collect().feed(html)
    return found


@pytest.mark.parametrize("payload", [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "<iframe src=https://evil.example></iframe>",
    '<div onclick="alert(1)">raw <b>html</b></div>',
    "<svg onload=alert(1)>",
    "<style>body{display:none}</style>",
])
def test_raw_html_in_an_answer_is_shown_as_text(payload: str) -> None:
    html = render_markdown(f"before {payload} after")
    assert elements(html) == [("p", {})]  # no element, no attribute from the payload
    # …and the reader sees what the model wrote, as text.
    assert html == f"<p>before {escape(payload, quote=False)} after</p>\n"


@pytest.mark.parametrize("link", [
    "[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)", "![x](javascript:alert(1))",
])
def test_script_links_are_not_links(link: str) -> None:
    html = render_markdown(link)
    assert elements(html) == [("p", {})]


def test_links_are_kept_with_rel_and_a_new_tab() -> None:
    html = render_markdown('see [the docs](https://example.com/a?b=1&c=2 "Docs")')
    assert '<a href="https://example.com/a?b=1&amp;c=2" title="Docs" target="_blank" rel="noopener noreferrer nofollow">the docs</a>' in html


def test_images_become_links_so_nothing_is_fetched_by_itself() -> None:
    html = render_markdown("![a cat](https://example.com/cat.png)")
    assert "<img" not in html
    assert '<a href="https://example.com/cat.png"' in html and ">a cat</a>" in html


def test_code_blocks_keep_their_text_escaped() -> None:
    html = render_markdown('```python\nprint("<script>alert(1)</script>")\nx = a && b\n```\n\nand `<img onerror=x>` inline')
    assert '<pre><code class="language-python">print("&lt;script&gt;alert(1)&lt;/script&gt;")\nx = a &amp;&amp; b\n</code></pre>' in html
    assert "<code>&lt;img onerror=x&gt;</code>" in html


def test_a_hostile_fence_language_cannot_add_attributes() -> None:
    html = render_markdown('```x" onmouseover="alert(1)\ncode\n```')
    assert "onmouseover" not in html and "<pre><code>code\n</code></pre>" in html


def test_markdown_structures_render() -> None:
    html = render_markdown("# Title\n\n- **bold** and *em* and ~~gone~~\n- two\n\n3. three\n\n> quote\n\n| a | b |\n|--:|---|\n| 1 | 2 |")
    for fragment in ("<h1>Title</h1>", "<strong>bold</strong>", "<em>em</em>", "<s>gone</s>", "<li>two</li>",
                     '<ol start="3">', "<blockquote>", '<th style="text-align:right">a</th>', "<td>2</td>"):
        assert fragment in html


def test_the_sanitiser_alone_strips_what_markdown_never_emits() -> None:
    # Defence in depth: even HTML that did not come from markdown-it is cleaned.
    dirty = ('<p style="color:red" onclick="x">hi<script>alert(1)</script><img src=x onerror=alert(1)>'
             '<a href="javascript:alert(1)">j</a><a href="https://ok.example">ok</a></p>')
    rel = {"target": "_blank", "rel": "noopener noreferrer nofollow"}
    assert elements(sanitize_html(dirty)) == [("p", {}), ("a", rel), ("a", {"href": "https://ok.example", **rel})]
    assert "alert" not in sanitize_html(dirty)  # the script's content goes with it


def test_empty_text_is_empty_html() -> None:
    assert render_markdown("") == ""
