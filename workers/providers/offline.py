"""The ``offline`` provider: deterministic answers with no model and no network, for the demo.

It is what ``haste up`` uses when no key is set, so that automations with AI steps run end
to end on a laptop. It is **labelled, never disguised**: tasks it serves carry
``model_provider = 'offline'`` and ``model_name = 'offline-heuristic-v1'``, text it writes
says "[offline]", and it costs nothing. It is chosen only explicitly (``provider:
offline``, ``HASTE_AI_PROVIDER=offline``) or by ``auto`` when *no* real key is set; a task
whose provider has no key fails with a configuration error rather than falling back here
(:mod:`workers.ai_routing`).

Answers come from keyword rules over the input text (sentiment lexicons, regexes for
emails, URLs, amounts and dates, the first sentences as a summary), shaped to each task's
output schema; a test checks each one validates.

Embeddings are feature hashing: lower-cased words (weight 1) and their character trigrams
(weight 0.5) are hashed (BLAKE2b) to one of 1536 signed buckets, and the vector is
L2-normalised. Texts sharing words or spellings get a high cosine similarity, so semantic
search and its tests behave sensibly on near-duplicates, and the same text always gives
the same vector. It knows nothing of synonyms: that is what a real model is for.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, ClassVar

from workers.providers.base import (
    EMBEDDING_DIMENSIONS,
    Completion,
    Embeddings,
    Provider,
    StructuredRequest,
)

MODEL = "offline-heuristic-v1"
EMBEDDING_MODEL = "offline-hashing-v1"
LABEL = "[offline]"

_WORD = re.compile(r"[a-z0-9][a-z0-9'+.-]*[a-z0-9]|[a-z0-9]", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://[^\s<>\"')]+")
_PHONE = re.compile(r"\+?\d[\d\s().-]{7,}\d")
_MONEY = re.compile(
    r"(?:[$€£]\s?\d[\d,]*(?:\.\d+)?(?:\s?[km])?|\d[\d,]*(?:\.\d+)?\s?(?:usd|eur|gbp))"
)
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def _vocab(text: str) -> frozenset[str]:
    return frozenset(text.split())


POSITIVE = _vocab(
    "great good love excellent thanks thank happy pleased glad awesome perfect impressed "
    "interested excited wonderful appreciate helpful fantastic yes agree",
)
NEGATIVE = _vocab(
    "bad angry terrible awful disappointed unhappy broken worst refund cancel cancelling "
    "complaint problem issue issues frustrated frustrating slow unacceptable poor never "
    "fail failed failing down outage wrong annoyed",
)
URGENT = _vocab("urgent asap immediately outage down critical emergency legal")
HIGH = _vocab("important soon deadline today tomorrow escalate contract renewal")
CATEGORY_WORDS: Mapping[str, frozenset[str]] = {
    "support_request": _vocab("help issue problem broken error bug support outage"),
    "billing": _vocab("invoice billing payment refund charge price pricing"),
    "sales_inquiry": _vocab("demo quote pricing buy purchase interested trial plan"),
    "partnership": _vocab("partner partnership integration reseller"),
    "recruiting": _vocab("job role candidate hiring resume cv position"),
    "newsletter": _vocab("unsubscribe newsletter digest weekly"),
}
SENIORITY = (
    ("c_level", ("ceo", "cto", "cfo", "coo", "cmo", "chief")),
    ("founder", ("founder", "co-founder")),
    ("vp", ("vp", "vice president")),
    ("director", ("director", "head of")),
    ("manager", ("manager", "lead")),
)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def flatten(value: Any) -> str:
    """Every string in a JSON value, in order, one per line."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "\n".join(flatten(v) for v in value.values() if v not in (None, ""))
    if isinstance(value, list | tuple):
        return "\n".join(flatten(v) for v in value)
    return "" if value is None else str(value)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if len(s.strip()) > 2]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --- embeddings ------------------------------------------------------------------------


def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    number = int.from_bytes(digest, "little")
    return number % EMBEDDING_DIMENSIONS, 1.0 if (number >> 63) & 1 else -1.0


def hashed_embedding(text: str) -> list[float]:
    """A deterministic, L2-normalised 1536-float vector of ``text`` (see the module doc)."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in words(text):
        index, sign = _bucket("w:" + word)
        vector[index] += sign
        padded = f"^{word}$"
        for i in range(len(padded) - 2):
            index, sign = _bucket("t:" + padded[i : i + 3])
            vector[index] += 0.5 * sign
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


# --- structured answers ----------------------------------------------------------------


def _sentiment(text: str) -> dict[str, Any]:
    ws = words(text)
    pos = sum(w in POSITIVE for w in ws)
    neg = sum(w in NEGATIVE for w in ws)
    total = pos + neg
    score = 0.0 if total == 0 else round((pos - neg) / total, 2)
    if total == 0:
        label = "neutral"
    elif pos and neg and abs(pos - neg) <= max(1, total // 4):
        label = "mixed"
    else:
        label = "positive" if pos > neg else "negative"
    return {
        "sentiment": label,
        "score": score,
        "confidence": round(min(0.9, 0.4 + 0.1 * total), 2),
        "reasoning": f"{LABEL} {pos} positive and {neg} negative keyword(s).",
    }


def _priority(ws: Sequence[str]) -> str:
    if any(w in URGENT for w in ws):
        return "urgent"
    if any(w in HIGH for w in ws):
        return "high"
    return "normal"


def _classification(text: str, data: Mapping[str, Any]) -> dict[str, Any]:
    ws = words(text)
    given = [str(c) for c in (data.get("input") or {}).get("categories") or [] if str(c)]
    scores = {name: sum(w in vocab for w in ws) for name, vocab in CATEGORY_WORDS.items()}
    if given:
        scores = {c: sum(part in ws for part in words(c.replace("_", " "))) for c in given}
        for name, vocab in CATEGORY_WORDS.items():
            if name in scores:
                scores[name] += sum(w in vocab for w in ws)
    best = max(scores, key=lambda k: scores[k]) if scores else "other"
    if scores and scores[best] == 0:
        best = given[0] if given else "other"
    category = re.sub(r"[^a-z0-9_]+", "_", best.lower()).strip("_")[:50] or "other"
    labels = sorted({w for w in ws if w in URGENT or w in HIGH})[:10]
    return {
        "category": category,
        "priority": _priority(ws),
        "labels": labels,
        "confidence": 0.5 if scores.get(best) else 0.2,
        "reasoning": f"{LABEL} keyword match for {category!r}.",
    }


def _entities(text: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: str, value: str, normalized: str | None) -> None:
        key = (kind, value)
        if key not in seen and len(found) < 100:
            seen.add(key)
            found.append({"type": kind, "text": value[:500], "normalized": normalized})

    for m in _EMAIL.findall(text):
        add("email", m, m.lower())
    for m in _URL.findall(text):
        add("url", m, None)
    for m in _DATE.findall(text):
        add("date", m, m)
    for m in _MONEY.findall(text):
        add("money", m.strip(), None)
    for m in _PHONE.findall(text):
        digits = re.sub(r"\D", "", m)
        if 8 <= len(digits) <= 15:
            add("phone", m.strip(), "+" + digits)
    return {"entities": found}


def _summary(text: str) -> dict[str, Any]:
    parts = sentences(text) or ["(no text)"]
    actions = [
        _clip(s, 500)
        for s in parts
        if re.search(r"\b(please|need to|needs to|will|todo|action|follow up|send)\b", s, re.I)
    ][:12]
    return {
        "summary": _clip(f"{LABEL} " + " ".join(parts[:2]), 4000),
        "key_points": [_clip(s, 500) for s in parts[:5]],
        "action_items": actions,
    }


def _meeting(text: str) -> dict[str, Any]:
    base = _summary(text)
    attendees: list[str] = []
    match = re.search(r"(?im)^\s*(?:attendees|participants)\s*:\s*(.+)$", text)
    if match:
        attendees = [a.strip()[:200] for a in match.group(1).split(",") if a.strip()][:50]
    decisions = [
        _clip(s, 500) for s in sentences(text) if re.search(r"\b(decided|agreed)\b", s, re.I)
    ][:20]
    return {
        "summary": base["summary"],
        "attendees": attendees,
        "decisions": decisions,
        "action_items": [
            {"description": a, "owner": None, "due_date": None} for a in base["action_items"]
        ][:30],
        "next_steps": base["action_items"][:20],
    }


def _email(data: Mapping[str, Any], reply: bool) -> dict[str, Any]:
    given = data.get("input") or {}
    record = data.get("record") or {}
    name = record.get("first_name") or given.get("recipient_name") or "there"
    if reply:
        subject = str(given.get("subject") or "your message")
        subject = subject if subject.lower().startswith("re:") else f"Re: {subject}"
        body = (
            f"Hi {name},\n\nThank you for your message. We have received it and will get "
            f"back to you with a complete answer shortly.\n\nBest regards\n\n{LABEL} draft"
        )
        return {
            "subject": _clip(subject, 200),
            "body_text": body,
            "body_html": None,
            "tone": "friendly",
            "intent": "acknowledge",
        }
    purpose = str(given.get("purpose") or given.get("subject") or "Following up")
    body = (
        f"Hi {name},\n\n{purpose.rstrip('.')}.\n\nWould you have 20 minutes this week to "
        f"talk about it?\n\nBest regards\n\n{LABEL} draft"
    )
    return {
        "subject": _clip(purpose, 200),
        "body_text": body,
        "body_html": None,
        "tone": "friendly",
        "call_to_action": "Book a 20-minute call",
    }


def _seniority(title: str) -> str:
    lowered = title.lower()
    for label, needles in SENIORITY:
        if any(re.search(rf"\b{re.escape(n)}\b", lowered) for n in needles):
            return label
    return "individual_contributor" if title else "unknown"


def _enrichment(text: str, data: Mapping[str, Any]) -> dict[str, Any]:
    record = data.get("record") or {}
    given = data.get("input") or {}
    email = str(record.get("email") or given.get("email") or "")
    domain = email.partition("@")[2]
    company = record.get("company") or given.get("company")
    if not company and domain and domain.split(".")[0] not in ("gmail", "yahoo", "outlook"):
        company = domain.split(".")[0].capitalize()
    title = str(record.get("title") or given.get("title") or "")
    location = ", ".join(str(record[k]) for k in ("city", "country") if record.get(k)) or None
    facts = [f for f in (title, company, location) if f]
    return {
        "company": company or None,
        "title": title or None,
        "department": record.get("department") or None,
        "industry": given.get("industry") or None,
        "seniority": _seniority(title),
        "location": location,
        "linkedin_url": record.get("linkedin_url") or None,
        "summary": _clip(f"{LABEL} " + (", ".join(map(str, facts)) or "no facts known"), 2000),
        "confidence": 0.3 if facts else 0.1,
    }


def _lead_score(text: str, data: Mapping[str, Any]) -> dict[str, Any]:
    record = data.get("record") or {}
    ws = words(text)
    score, reasons = 30, []
    seniority = _seniority(str(record.get("title") or ""))
    if seniority in ("c_level", "founder", "vp"):
        score += 25
        reasons.append(f"senior title ({seniority})")
    elif seniority in ("director", "manager"):
        score += 15
        reasons.append(f"decision-adjacent title ({seniority})")
    if record.get("company") or record.get("company_id"):
        score += 10
        reasons.append("company known")
    value = record.get("value")
    try:
        if value is not None and float(value) >= 10_000:
            score += 15
            reasons.append(f"deal value {value}")
    except (TypeError, ValueError):
        pass
    intent = sum(w in {"demo", "pricing", "trial", "buy", "quote", "interested"} for w in ws)
    if intent:
        score += min(20, 7 * intent)
        reasons.append(f"{intent} buying signal(s) in the text")
    score = max(0, min(100, score))
    if not reasons:
        reasons.append("no strong signal")
    predicted = None
    if record.get("expected_close_date"):
        predicted = str(record["expected_close_date"])[:10]
    elif "value" in record:
        predicted = (date.today() + timedelta(days=90 - score // 2)).isoformat()
    grade = "A" if score >= 80 else "B" if score >= 60 else "C" if score >= 40 else "D"
    return {
        "score": score,
        "grade": grade,
        "reasons": [f"{LABEL} {r}" for r in reasons][:8],
        "win_probability": round(score / 100, 2),
        "predicted_close_date": predicted,
    }


ANSWERS: Mapping[str, Callable[[str, Mapping[str, Any]], dict[str, Any]]] = {
    "sentiment_analysis": lambda text, data: _sentiment(text),
    "classification": _classification,
    "entity_extraction": lambda text, data: _entities(text),
    "summarization": lambda text, data: _summary(text),
    "meeting_summary": lambda text, data: _meeting(text),
    "email_generation": lambda text, data: _email(data, reply=False),
    "email_reply": lambda text, data: _email(data, reply=True),
    "contact_enrichment": _enrichment,
    "lead_scoring": _lead_score,
}


def _context(prompt: str) -> dict[str, Any]:
    """The input and record JSON blocks of a rendered prompt (see prompts/_context.jinja)."""
    found: dict[str, Any] = {}
    for tag in ("input", "record"):
        match = re.search(rf"<{tag}>\n(.*?)\n</{tag}>", prompt, re.S)
        if match:
            try:
                found[tag] = json.loads(match.group(1))
            except ValueError:
                found[tag] = match.group(1)
    return found


@dataclass
class OfflineProvider(Provider):
    """Deterministic stand-in; see the module doc for when it is (and is never) used."""

    name: ClassVar[str] = "offline"
    offline: ClassVar[bool] = True

    def complete(self, request: StructuredRequest) -> Completion:
        data = _context(request.prompt)
        text = flatten(data.get("input")) + "\n" + flatten(data.get("record"))
        answer = ANSWERS[request.task_type](text, data)
        raw = json.dumps(answer, ensure_ascii=False)
        return Completion(
            self.name,
            MODEL,
            answer,
            raw,
            input_tokens=len(words(request.prompt)),
            output_tokens=len(words(raw)),
            finish_reason="stop",
        )

    def embed(self, texts: Sequence[str], *, model: str, timeout: float) -> Embeddings:
        vectors = [hashed_embedding(t) for t in texts]
        return Embeddings(self.name, EMBEDDING_MODEL, vectors, sum(len(words(t)) for t in texts))
