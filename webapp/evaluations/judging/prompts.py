"""Judge prompt templates: one per category (general, coding, math), per mode
(score pair, verdict) and language (zh, en).

A template is a `str.format` string with exactly these fields:
  {question} {answer_1} {answer_2}  — required; answer_1 is the answer shown first
  {reference_section}               — optional; a labelled reference-answer block,
                                      or "" when the row has no reference
Literal braces are written `{{` and `}}`. The templates are stored with each
evaluation, so a report always shows what the judge was asked.

The wording is ours. Its reply formats are the contract with `parsing`:
score pair — the first line is "s1 s2" (math: the reply ends with "(s1, s2)");
verdict — the reply ends with [[A]], [[B]] or [[C]] (tie)."""
from __future__ import annotations

import re
from string import Formatter

CATEGORIES = ("general", "coding", "math")
MODES = ("score", "verdict")
LANGUAGES = ("zh", "en")
REQUIRED_FIELDS = ("question", "answer_1", "answer_2")
OPTIONAL_FIELDS = ("reference_section",)
MAX_TEMPLATE_CHARS = 20_000


class TemplateError(ValueError):
    """A template that cannot be used; `category` names which one."""

    def __init__(self, category: str, message: str) -> None:
        super().__init__(f"{category}: {message}")
        self.category = category
        self.message = message


# --- the default templates ----------------------------------------------------
# Shared pieces are assembled below so the six templates per language stay
# consistent (same layout, same bias warnings, same output rule).

_ZH_LAYOUT = """[问题]
{{question}}
{{reference_section}}
[{label}1的回答开始]
{{answer_1}}
[{label}1的回答结束]

[{label}2的回答开始]
{{answer_2}}
[{label}2的回答结束]
"""

_EN_LAYOUT = """[Question]
{{question}}
{{reference_section}}
[Start of {label} 1's answer]
{{answer_1}}
[End of {label} 1's answer]

[Start of {label} 2's answer]
{{answer_2}}
[End of {label} 2's answer]
"""

_ZH_FAIRNESS = (
    "- 回答出现的先后顺序与质量无关，请不要因为顺序偏向任何一方。\n"
    "- 篇幅长短本身不是优点：不要因为回答更长或更短而加分或减分。\n"
    "- 如果上面给出了参考答案，请以它作为判断正确性的依据。\n"
)

_EN_FAIRNESS = (
    "- The order in which the answers appear says nothing about their quality; do not let it sway you.\n"
    "- Length is not a merit in itself: do not reward or penalise an answer for being longer or shorter.\n"
    "- If a reference answer is given above, use it as the basis for judging correctness.\n"
)

_ZH_FOCUS = {
    "general": "综合考虑有用性、相关性、准确性、完整性和表达是否清楚。",
    "coding": "重点检查代码是否正确、能否运行、是否处理了边界情况，其次考虑效率、可读性和解释是否清楚。",
    "math": "重点检查解题步骤和最终答案是否正确；最终答案错误的回答不能得高分。",
}

_EN_FOCUS = {
    "general": "Consider helpfulness, relevance, accuracy, completeness and clarity together.",
    "coding": "Check above all whether the code is correct, would run and handles edge cases; then efficiency, "
              "readability and the clarity of the explanation.",
    "math": "Check above all whether the reasoning and the final answer are correct; an answer with a wrong "
            "final result cannot score high.",
}

_ZH_INTRO = "你是一名严谨、公正的评审。下面是用户的一个问题和两位 AI 助手的回答。"
_EN_INTRO = "You are a careful and impartial judge. Below are a user's question and the answers of two AI assistants."

_ZH_SOLVE_FIRST = "请先独立解答这道题，写出你的解题过程和最终答案；再逐一核对两位助手的步骤和答案。\n"
_EN_SOLVE_FIRST = ("First solve the problem yourself and write down your working and final answer; "
                   "then check each assistant's steps and answer against it.\n")


def _zh_score(category: str) -> str:
    rules = f"评分要求：\n- {_ZH_FOCUS[category]}为每个回答打 1 到 10 的整数分，越高越好。\n" + _ZH_FAIRNESS
    if category == "math":
        task = _ZH_SOLVE_FIRST + "最后一行只写两个分数组成的元组，依次为助手1和助手2的分数，例如：(3, 9)"
    else:
        task = "输出格式：第一行只写两个分数，依次为助手1和助手2的分数，用一个空格隔开，例如：7 5\n从第二行起简要说明理由。"
    return f"{_ZH_INTRO}\n\n{_ZH_LAYOUT.format(label='助手')}\n{rules}\n{task}\n"


def _en_score(category: str) -> str:
    rules = (f"How to score:\n- {_EN_FOCUS[category]} Give each answer a whole number from 1 to 10; "
             "higher is better.\n" + _EN_FAIRNESS)
    if category == "math":
        task = (_EN_SOLVE_FIRST + "End your reply with a line holding only the two scores as a tuple, "
                "assistant 1's first, e.g.: (3, 9)")
    else:
        task = ("Output format: the first line holds only the two scores, assistant 1's first, separated by "
                "a space, e.g.: 7 5\nFrom the second line on, explain briefly.")
    return f"{_EN_INTRO}\n\n{_EN_LAYOUT.format(label='Assistant')}\n{rules}\n{task}\n"


def _zh_verdict(category: str) -> str:
    rules = f"评判要求：\n- {_ZH_FOCUS[category]}\n" + _ZH_FAIRNESS
    task = (_ZH_SOLVE_FIRST if category == "math" else "") + (
        "先简要说明理由，然后在最后一行只写结论：助手A更好写 [[A]]，助手B更好写 [[B]]，两者相当写 [[C]]。")
    layout = _ZH_LAYOUT.format(label="助手").replace("助手1", "助手A").replace("助手2", "助手B")
    return f"{_ZH_INTRO}\n\n{layout}\n{rules}\n{task}\n"


def _en_verdict(category: str) -> str:
    rules = f"How to judge:\n- {_EN_FOCUS[category]}\n" + _EN_FAIRNESS
    task = (_EN_SOLVE_FIRST if category == "math" else "") + (
        "Explain briefly, then give your verdict alone on the last line: [[A]] if assistant A is better, "
        "[[B]] if assistant B is better, [[C]] for a tie.")
    layout = (_EN_LAYOUT.format(label="Assistant")
              .replace("Assistant 1", "Assistant A").replace("Assistant 2", "Assistant B"))
    return f"{_EN_INTRO}\n\n{layout}\n{rules}\n{task}\n"


_BUILDERS = {
    ("score", "zh"): _zh_score,
    ("score", "en"): _en_score,
    ("verdict", "zh"): _zh_verdict,
    ("verdict", "en"): _en_verdict,
}


def default_templates(mode: str, language: str) -> dict[str, str]:
    """category → template for a judging mode ("score" | "verdict") and language ("zh" | "en")."""
    builder = _BUILDERS.get((mode, language))
    if builder is None:
        raise ValueError(f"no default templates for mode {mode!r} and language {language!r}; "
                         f"modes: {', '.join(MODES)}; languages: {', '.join(LANGUAGES)}")
    return {category: builder(category) for category in CATEGORIES}


# --- checking and rendering ----------------------------------------------------

def _check_one(category: str, template: object) -> str:
    if not isinstance(template, str) or not template.strip():
        raise TemplateError(category, "the template is empty")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise TemplateError(category, f"the template is longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        parts = list(Formatter().parse(template))
    except ValueError as err:  # a lone "{" or "}"
        raise TemplateError(category, f"{err}; write literal braces as {{{{ and }}}}") from None
    seen: set[str] = set()
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        # Only bare names: "{question.__class__}" or "{0}" would let a
        # template reach past the values we pass in.
        if field not in REQUIRED_FIELDS + OPTIONAL_FIELDS:
            allowed = ", ".join("{" + name + "}" for name in REQUIRED_FIELDS + OPTIONAL_FIELDS)
            raise TemplateError(category, f"unknown placeholder {{{field}}}; allowed: {allowed} "
                                          "(write literal braces as {{ and }})")
        if spec or conversion:
            raise TemplateError(category, f"placeholder {{{field}}} takes no format or conversion")
        seen.add(field)
    missing = [name for name in REQUIRED_FIELDS if name not in seen]
    if missing:
        raise TemplateError(category, "missing placeholder " + ", ".join("{" + name + "}" for name in missing))
    try:  # the parse above should catch everything; a trial render proves it
        render_prompt(template, question="q", reference="r", answer_1="a1", answer_2="a2")
    except (KeyError, IndexError, ValueError, AttributeError) as err:
        raise TemplateError(category, f"the template does not render: {err}") from None
    return template


def check_templates(templates: object) -> dict[str, str]:
    """A complete set (every category, nothing else), in CATEGORIES order.

    Raises TemplateError naming the first category at fault."""
    if not isinstance(templates, dict):
        raise TemplateError("templates", "expected an object mapping category to template")
    for category in templates:
        if category not in CATEGORIES:
            raise TemplateError(str(category), f"unknown category; expected {', '.join(CATEGORIES)}")
    checked: dict[str, str] = {}
    for category in CATEGORIES:
        if category not in templates:
            raise TemplateError(category, "missing template")
        checked[category] = _check_one(category, templates[category])
    return checked


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def reference_section(reference: str, *, chinese: bool) -> str:
    """The labelled reference block, or "" when there is no reference."""
    if not reference.strip():
        return ""
    if chinese:
        return f"\n[参考答案开始]\n{reference}\n[参考答案结束]\n"
    return f"\n[Start of reference answer]\n{reference}\n[End of reference answer]\n"


def render_prompt(template: str, *, question: str, reference: str, answer_1: str, answer_2: str) -> str:
    """The text sent to the judge. The reference block's labels follow the
    template's language: Chinese when the template has any CJK character."""
    section = reference_section(reference, chinese=bool(_CJK.search(template)))
    # Values are substituted, never re-parsed: braces inside answers are safe.
    return template.format(question=question, answer_1=answer_1, answer_2=answer_2, reference_section=section)


def template_for(templates: dict[str, str], category: str) -> str:
    """The template for a row's category; unknown categories use "general"."""
    return templates.get(category) or templates["general"]
