"""Final answers of references and completions, compared with math-verify (Hugging Face's answer checker).

A reference (the dataset's ``chosen`` answer) falls in one of five modes, decided once per reference text:

* ``math``: a final answer math-verify can parse: the content of ``\\boxed{}``, the text after GSM8K's
  ``####``, "the answer is", "answer:", "정답은", "답:" (up to the end of its clause: "16 dollars, which is 2 less
  than 18" is 16; markdown bold dropped), or a reference that is itself a number or expression
  (``27``, ``1,000``, ``\\frac{1}{2}``, ``x^2+1``, ``$(1, 2)$``).  The completion's answer is parsed the same way
  and ``math_verify.verify`` decides (``0.5`` equals ``\\frac{1}{2}``, ``2\\sqrt{2}`` differs from ``2``; several
  ``\\boxed{}`` in one completion form one set answer).
* ``text_answer``: a marked answer that is words, not math ("The answer is Paris"): compared as normalised text.
* ``unparseable``: a marked answer or a bare expression from which math-verify extracts nothing (``\\boxed{}``,
  "#### ?"): the completion cannot be checked, and scores ``None`` (TRL leaves it out of the weighted sum) rather
  than a fake 0.  (What math-verify extracts as text but cannot read as math is compared as that text, as in TRL.)
* ``free_text``: a reference sentence without a marked answer: graded by word overlap (see ``rewards``).
* ``keywords``: no reference at all.

Each math-verify call runs under ``thread_deadline.deadline`` (math-verify's own ``signal.alarm`` timeout works
only in the main thread; rewards run in worker threads).  A parse or comparison past ``MATH_TIMEOUT_S`` counts as
not matching.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from thread_deadline import DeadlineExceeded, deadline

logger = logging.getLogger(__name__)

MATH = "math"
TEXT_ANSWER = "text_answer"
UNPARSEABLE = "unparseable"
FREE_TEXT = "free_text"
KEYWORDS = "keywords"
MODES = (MATH, TEXT_ANSWER, UNPARSEABLE, FREE_TEXT, KEYWORDS)

MATH_TIMEOUT_S = 5.0
MAX_PARSE_CHARS = 4000  # of a completion's end given to math-verify (0.1 s for 4000 characters of numbers)
# LaTeX (boxed first) then plain numbers: the configuration of math-verify's own test suite.
EXTRACTION = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())

_BOXED = "\\boxed"
_MARKER_RE = re.compile(
    r"(?:####|the\s+(?:final\s+)?answer\s+is|answer\s*[:=]|정답은|정답\s*[:=]|답은|답\s*[:=])\s*:?\s*([^\n]+)",
    re.IGNORECASE,
)
# Formulas from the first delimiter to the last: "$1$ and $2$ and $3$" (real references list answers so) is bare.
_DELIMITED_RE = re.compile(r"\s*(\$\$?|\\\(|\\\[).+?(\$\$?|\\\)|\\\])\s*\.?\s*", re.DOTALL)
_NUMERIC_RE = re.compile(r"[\s\d.,/+\-$%€£]+")
_PLAIN_NUMBER_RE = re.compile(r"\$?(-?\d+(?:\.\d+)?)\.?")  # no thousands or decimal commas: math-verify reads those
_LATEX_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_WORD_RE = re.compile(r"[^\W\d_]{2,}")
_TOKEN_RE = re.compile(r"\w+", re.UNICODE)
_MATH_HINT_RE = re.compile(r"[\d\\^_{}=]")


class _DisabledTimeoutFilter(logging.Filter):
    """Drop math-verify's "Timeout is disabled" warning: ``deadline`` is the timeout here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DisabledTimeoutFilter())


@dataclass(frozen=True)
class Reference:
    """A reference's mode and its answer: math-verify's parse (``math``) or normalised words (``text_answer``)."""

    mode: str
    answer: Any = None


def words(text: str) -> list[str]:
    """Lower-case words (letters and digits, any script) of ``text``."""
    return _TOKEN_RE.findall(text.lower())


def normalise_text(text: str) -> str:
    """Words joined by single spaces: 'Paris.' and 'paris' compare equal."""
    return " ".join(words(text))


def _clean(text: str) -> str:
    return text.replace("−", "-").strip()


# Where a marked answer ends and the explanation starts: a sentence end, ", which ..." (a comma before a word: not
# "1,000" or "x = 5, y = 3"), or " (since ...)". Real chat answers go on after the answer ("The answer is 16
# dollars, which is 2 less than 18." was read as 18).
_CLAUSE_END_RE = re.compile(r"[.!?](?=\s|$)|,\s+(?=[^\W\d_]{2,})|\s+\(")
_EMPHASIS_RE = re.compile(r"\*\*|__|`")  # markdown bold and code around an answer ("**42**")


def _marked_span(text: str) -> str | None:
    """The answer after the last answer marker (####, 'the answer is', '정답은', ...) up to the end of its clause,
    or None."""
    found = _MARKER_RE.findall(text)
    if not found:
        return None
    span = _EMPHASIS_RE.sub("", found[-1]).strip()
    if _BOXED in span or _DELIMITED_RE.match(span):  # LaTeX keeps its own punctuation
        return span
    end = _CLAUSE_END_RE.search(span)
    return (span[: end.start()] if end and end.start() > 0 else span).strip()


def answer_clause(text: str) -> str | None:
    """A completion's marked answer (see ``_marked_span``), or None when it marks none."""
    return _marked_span(_clean(text))


def _has_words(text: str) -> bool:
    """True when ``text`` holds a word of two or more letters outside LaTeX commands ('18 dollars', 'Paris')."""
    return bool(_WORD_RE.search(_LATEX_COMMAND_RE.sub(" ", text)))


def _timed(call: Callable[[], Any], fallback: Any, what: str) -> Any:
    """``call()`` under ``MATH_TIMEOUT_S``; ``fallback`` when it runs longer."""
    try:
        with deadline(MATH_TIMEOUT_S):
            return call()
    except DeadlineExceeded:
        logger.warning("math-verify took over %.0f s to %s; counted as no match", MATH_TIMEOUT_S, what)
        return fallback


def parse_math(text: str) -> list:
    """math-verify's parse of ``text``'s last ``MAX_PARSE_CHARS`` (the final answer is at the end); [] when nothing
    parses or it takes too long.  The deadline cannot stop math-verify inside its C-level regex and sympy work: a
    100k-character completion of numbers took 45 s whatever the limit, so long texts are cut first."""
    text = text[-MAX_PARSE_CHARS:]
    return _timed(lambda: parse(text, list(EXTRACTION), parsing_timeout=None), [], f"parse {text[:60]!r}")


def parse_span(span: str) -> list:
    """Parse an answer span: delimited LaTeX as is, words as text with numbers, bare math as LaTeX."""
    plain = _PLAIN_NUMBER_RE.fullmatch(span)
    if plain:  # '42', '-3.5', '$18.': exact, without sympy's 1.5 ms expression parser
        return [sympy.Rational(plain.group(1)), plain.group(1)]
    if _BOXED in span or _DELIMITED_RE.search(span) or _has_words(span) or _NUMERIC_RE.fullmatch(span):
        return parse_math(span)
    return parse_math(f"${span}$") or parse_math(span)


def _is_bare(reference: str) -> bool:
    """A reference that is only an answer: one delimited formula, or math without words."""
    return bool(_DELIMITED_RE.fullmatch(reference)) or not _has_words(reference)


@functools.lru_cache(maxsize=16384)
def parse_reference(reference: str) -> Reference:
    """The mode and parsed final answer of a reference (cached: every completion of a prompt shares it)."""
    text = _clean(reference)
    if not text:
        return Reference(KEYWORDS)
    span = text if _BOXED in text else _marked_span(text)
    if span is None:
        if not _is_bare(text):
            return Reference(FREE_TEXT)
        span = text
    parsed = parse_span(span)
    if parsed:
        return Reference(MATH, tuple(parsed))
    if _MATH_HINT_RE.search(span) or not normalise_text(span):
        return Reference(UNPARSEABLE)
    return Reference(TEXT_ANSWER, normalise_text(span))


def completion_answer(text: str) -> list:
    """The completion's final answer parsed by math-verify: ``\\boxed{}`` first, then a marked answer, else the text."""
    text = _clean(text)
    if _BOXED not in text:
        span = _marked_span(text)
        if span is not None:
            return parse_span(span)
        if _is_bare(text):  # only an answer ("x = 5, y = 3"): parsed as a reference is, not as its last number
            return parse_span(text)
    return parse_math(text)


def math_matches(reference: Reference, completion: str) -> bool:
    """math-verify's verdict on the completion's final answer against a ``math`` reference."""
    predicted = completion_answer(completion)
    if not predicted:
        return False
    gold = list(reference.answer)
    return _timed(lambda: verify(gold, predicted, timeout_seconds=None), False, "compare answers")


_SENTENCE_END_RE = re.compile(r"[.!?](?=\s|$)")
_NEGATIONS = frozenset({"not", "no", "never", "t"})  # "t": the end of "isn't" as words() splits it


def text_matches(reference: Reference, completion: str) -> bool:
    """A ``text_answer`` reference: the completion's marked answer, normalised, equals it; a completion that marks
    none states it as the closing words of its last sentence, not negated ("The capital is Paris." against "The
    answer is Paris": chat models state answers without a marker, and comparing the whole sentence scored 0)."""
    span = answer_clause(completion)
    if span is not None:
        return normalise_text(span) == reference.answer
    answer = reference.answer.split()
    sentences = [words(s) for s in _SENTENCE_END_RE.split(_clean(completion))]
    said = next((s for s in reversed(sentences) if s), [])
    before = said[-len(answer) - 1 : -len(answer)]
    return said[-len(answer) :] == answer and not _NEGATIONS.intersection(before)


def count_modes(references: Iterable[str]) -> dict[str, int]:
    """How many references fall in each mode (all modes listed, zeros included)."""
    counts = dict.fromkeys(MODES, 0)
    for reference in references:
        counts[parse_reference(reference or "").mode] += 1
    return counts
