"""Wording helpers for verdicts: whole sentences, the quote that carries the reason, short tool names."""

from __future__ import annotations

import re
from collections.abc import Iterable

import sentencex

from newsletter.issues.content import ELISION, ELLIPSIS, QUOTE_LIMIT
from newsletter.models import tool_key

# --- sentences -------------------------------------------------------------------------------

_REASON = re.compile(
    r"\b(ship|skip|worth|upgrade|earns?|recommend\w*|because|unlock|moat|risk|kills?|breaks?|"
    r"justify|matters?|wins?|loses?|problem|differentiator|decision)\b",
    re.IGNORECASE,
)
_COMPARISON = re.compile(
    r"\b(than|vs\.?|versus|against|instead|better|worse|faster|slower|cheaper|difference|unlike|"
    r"categorically|compared)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d")


def sentences(text: str) -> list[str]:
    """Whole sentences of ``text`` (whitespace collapsed), by ``sentencex``."""
    clean = " ".join(text.split())
    return [clean[start:end] for start, end in _spans(clean)]


def _spans(clean: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence in ``clean``: runs of sentences are sliced from the text
    itself, so a quote never gains or loses a character between its sentences."""
    spans: list[tuple[int, int]] = []
    position = 0
    for part in sentencex.segment("en", clean) if clean else []:
        stripped = part.strip()
        if not stripped:
            continue
        start = clean.find(stripped, position)
        if start < 0:  # the segmenter changed the text: fall back to the rest as one sentence
            spans.append((position, len(clean)))
            break
        spans.append((start, start + len(stripped)))
        position = start + len(stripped)
    return spans


def sentence_weight(sentence: str) -> int:
    """How much of a reason a sentence carries: a verdict word, a number, a comparison."""
    return (
        3 * bool(_REASON.search(sentence))
        + 2 * bool(_NUMBER.search(sentence))
        + bool(_COMPARISON.search(sentence))
    )


def reason_quote(text: str, limit: int = QUOTE_LIMIT) -> tuple[str, bool]:
    """Whole sentences of ``text`` within ``limit`` characters, the weightiest first chosen,
    shown in their order; left-out stretches are marked with an ellipsis between sentences.

    Never cuts a sentence: when no sentence fits, the shortest of the weightiest is kept whole.
    """
    clean = " ".join(text.split())
    spans = _spans(clean)
    if not spans:
        return "", False
    if len(clean) <= limit:
        return clean, False
    parts = [clean[start:end] for start, end in spans]

    def joined(indices: list[int]) -> str:
        runs: list[str] = []
        run_start = previous = -2
        for index in sorted(indices):
            if index != previous + 1:
                if previous >= 0:
                    runs.append(clean[spans[run_start][0] : spans[previous][1]])
                run_start = index
            previous = index
        runs.append(clean[spans[run_start][0] : spans[previous][1]])
        return ELISION.join(runs)

    ranked = sorted(range(len(parts)), key=lambda i: (-sentence_weight(parts[i]), len(parts[i]), i))
    chosen: list[int] = []
    for index in ranked:
        if len(joined([*chosen, index])) <= limit:
            chosen.append(index)
    if not chosen:
        best = sentence_weight(parts[ranked[0]])
        chosen = [min((i for i in ranked if sentence_weight(parts[i]) == best), key=lambda i: len(parts[i]))]
    return joined(chosen), True


def trim_words(text: str, limit: int = QUOTE_LIMIT) -> tuple[str, bool]:
    """Collapse whitespace, cut at a word boundary under ``limit`` and add an ellipsis.

    Only for labels we write ourselves; quotes use ``reason_quote``.
    """
    clean = " ".join(text.split())
    if len(clean) <= limit:
        return clean, False
    cut = clean[: limit - len(ELLIPSIS) + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > limit // 2 else cut[: limit - len(ELLIPSIS)]
    cut = cut.rstrip(" ,;:.-—–'\"“(")
    return cut + ELLIPSIS, True


# --- names -----------------------------------------------------------------------------------


def short_name(name: str, words: int | None = None) -> str:
    """A tool's name without its parenthetical, optionally its first ``words`` words."""
    plain = re.sub(r"\s*\([^)]*\)", "", name).strip() or name
    if words is not None:
        kept: list[str] = []
        counted = 0
        for word in plain.split():
            if counted == words:
                break
            kept.append(word)
            counted += any(ch.isalnum() for ch in word)
        while len(kept) > 1 and not any(ch.isalnum() for ch in kept[-1]):
            kept.pop()
        plain = " ".join(kept) or plain
    return plain


def _word_prefix(short: str, name: str) -> bool:
    a, b = tool_key(short).split(), tool_key(name).split()
    return bool(a) and b[: len(a)] == a


def name_forms(name: str, others: Iterable[str]) -> list[str]:
    """``name`` and its shortenings that no other tool of the issue could be read as.

    "Mistral 3" is not offered for "Mistral 3 Small (24B)" when the issue also has
    "Mistral 3 8B & 70B Instruct": a shortening must not be a word-prefix of another name.
    """
    rivals = [other for other in others if tool_key(other) != tool_key(name)]
    forms = [name]
    plain = short_name(name)
    candidates = [plain] + [short_name(name, n) for n in range(len(plain.split()) - 1, 1, -1)]
    for candidate in candidates:
        if candidate in forms or not candidate.strip():
            continue
        if any(_word_prefix(candidate, rival) or _word_prefix(rival, candidate) for rival in rivals):
            continue
        forms.append(candidate)
    return forms
