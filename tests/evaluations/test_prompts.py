from __future__ import annotations

import pytest

from webapp.evaluations.judging.prompts import (
    CATEGORIES,
    LANGUAGES,
    MODES,
    TemplateError,
    check_templates,
    default_templates,
    render_prompt,
    template_for,
)

ALL_DEFAULTS = [(mode, language) for mode in MODES for language in LANGUAGES]


@pytest.mark.parametrize(("mode", "language"), ALL_DEFAULTS)
def test_default_templates_cover_every_category_and_pass_the_check(mode: str, language: str) -> None:
    templates = default_templates(mode, language)
    assert tuple(templates) == CATEGORIES
    assert check_templates(templates) == templates


@pytest.mark.parametrize(("mode", "language"), ALL_DEFAULTS)
def test_rendered_defaults_show_question_then_first_then_second_answer(mode: str, language: str) -> None:
    for category, template in default_templates(mode, language).items():
        text = render_prompt(template, question="QUESTION-X", reference="", answer_1="FIRST-Y", answer_2="SECOND-Z")
        assert "{" not in text and "}" not in text, category
        assert text.index("QUESTION-X") < text.index("FIRST-Y") < text.index("SECOND-Z"), category


def test_score_templates_ask_for_first_line_scores_and_math_for_a_final_tuple() -> None:
    zh, en = default_templates("score", "zh"), default_templates("score", "en")
    for category in ("general", "coding"):
        assert "第一行只写两个分数" in zh[category]
        assert "first line holds only the two scores" in en[category]
    assert "(3, 9)" in zh["math"] and "独立解答" in zh["math"]
    assert "(3, 9)" in en["math"] and "solve the problem yourself" in en["math"]
    assert "第一行" not in zh["math"]


def test_verdict_templates_ask_for_a_final_marker_and_math_solves_first() -> None:
    for language in LANGUAGES:
        templates = default_templates("verdict", language)
        for template in templates.values():
            assert all(marker in template for marker in ("[[A]]", "[[B]]", "[[C]]"))
        assert "独立解答" in templates["math"] if language == "zh" else "yourself" in templates["math"]
        assert "独立解答" not in templates["general"] and "yourself" not in templates["general"]


@pytest.mark.parametrize(("language", "order_word", "length_word"), [("zh", "顺序", "篇幅"), ("en", "order", "Length")])
def test_every_default_template_warns_against_order_and_length_bias(
        language: str, order_word: str, length_word: str) -> None:
    for mode in MODES:
        for template in default_templates(mode, language).values():
            assert order_word in template and length_word in template


def test_reference_block_is_labelled_in_the_template_language_and_absent_without_reference() -> None:
    zh = default_templates("score", "zh")["general"]
    en = default_templates("score", "en")["general"]
    with_ref = render_prompt(zh, question="q", reference="标准答案是 42", answer_1="a", answer_2="b")
    assert "[参考答案开始]\n标准答案是 42\n[参考答案结束]" in with_ref
    assert "[Start of reference answer]\nforty-two\n[End of reference answer]" in render_prompt(
        en, question="q", reference="forty-two", answer_1="a", answer_2="b")
    for template in (zh, en):
        for blank in ("", "  \n"):
            text = render_prompt(template, question="q", reference=blank, answer_1="a", answer_2="b")
            assert "参考答案开始" not in text and "reference answer]" not in text


def test_braces_in_the_values_are_not_interpreted() -> None:
    text = render_prompt("Q: {question}\n1: {answer_1}\n2: {answer_2}{reference_section}", question="f({x})",
                         reference="", answer_1="def f(): return {'a': 1}", answer_2="{answer_1}")
    assert text == "Q: f({x})\n1: def f(): return {'a': 1}\n2: {answer_1}"


def test_literal_braces_in_a_template_are_written_doubled() -> None:
    templates = {c: "{question} {answer_1} {answer_2} JSON: {{\"s\": [1, 2]}}" for c in CATEGORIES}
    checked = check_templates(templates)
    assert render_prompt(checked["math"], question="q", reference="", answer_1="a", answer_2="b") == \
        'q a b JSON: {"s": [1, 2]}'


GOOD = "{question}\n{reference_section}\n{answer_1}\n{answer_2}"


@pytest.mark.parametrize(("template", "message"), [
    ("", "empty"),
    ("   \n", "empty"),
    ("{question} {answer_1}", "missing placeholder {answer_2}"),
    ("{answer_1} {answer_2}", "missing placeholder {question}"),
    (GOOD + " {score}", "unknown placeholder {score}"),
    (GOOD + " {0}", "unknown placeholder {0}"),
    (GOOD + " {}", "unknown placeholder {}"),
    (GOOD + " {question.__class__}", "unknown placeholder {question.__class__}"),
    (GOOD + " {answer_1!r}", "no format or conversion"),
    (GOOD + " {answer_1:>20}", "no format or conversion"),
    (GOOD + " {", "literal braces"),
    (GOOD + " }", "literal braces"),
    ("x" * 20_001 + GOOD, "longer than"),
])
def test_check_templates_names_the_category_and_the_problem(template: str, message: str) -> None:
    templates = {"general": GOOD, "coding": template, "math": GOOD}
    with pytest.raises(TemplateError) as caught:
        check_templates(templates)
    assert caught.value.category == "coding"
    assert message in caught.value.message


def test_check_templates_wants_every_category_and_no_other() -> None:
    with pytest.raises(TemplateError) as missing:
        check_templates({"general": GOOD, "coding": GOOD})
    assert (missing.value.category, missing.value.message) == ("math", "missing template")
    with pytest.raises(TemplateError) as unknown:
        check_templates({"general": GOOD, "coding": GOOD, "math": GOOD, "poetry": GOOD})
    assert unknown.value.category == "poetry" and "unknown category" in unknown.value.message
    with pytest.raises(TemplateError):
        check_templates(["not", "a", "dict"])
    with pytest.raises(TemplateError) as not_text:
        check_templates({"general": GOOD, "coding": 3, "math": GOOD})
    assert not_text.value.category == "coding"


def test_check_templates_returns_categories_in_canonical_order() -> None:
    assert tuple(check_templates({"math": GOOD, "general": GOOD, "coding": GOOD})) == CATEGORIES


def test_template_for_falls_back_to_general_for_unknown_categories() -> None:
    templates = {"general": "G", "coding": "C", "math": "M"}
    assert template_for(templates, "math") == "M"
    assert template_for(templates, "coding") == "C"
    assert template_for(templates, "open qa") == "G"
    assert template_for(templates, "") == "G"


def test_default_templates_refuse_unknown_mode_or_language() -> None:
    with pytest.raises(ValueError, match="mode 'best-of'"):
        default_templates("best-of", "zh")
    with pytest.raises(ValueError, match="language 'fr'"):
        default_templates("score", "fr")
