"""The nine AI task types of the spec: prompt template, output schema, validation.

Each type has ``schemas/ai/<type>.json`` (the output JSON Schema, draft 2020-12) and
``schemas/ai/prompts/<type>.jinja`` (the user prompt; ``system.jinja`` is shared). The
schemas are written for OpenAI's strict structured-output mode (every property required,
``additionalProperties: false``, nullable instead of optional), so the same document is
sent to OpenAI (``response_format``), to Anthropic (a tool's ``input_schema``) and used to
validate the answer here. Strict mode rejects a few keywords (string lengths), so
:func:`provider_schema` strips them from what is *sent*; validation keeps them.

A type's ``version`` hashes its template, the shared templates and its schema: it is part
of the response-cache key, so editing a prompt never serves answers to the old one.

Which ``ai_models.type`` serves a task type (the spec's model types are coarser than its
task types) is :data:`MODEL_TYPE`; an ``ai_models`` row can also name task types exactly
in ``config.task_types`` (see :mod:`workers.ai_routing`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from schemas import ROOT

AI_DIR = ROOT / "ai"
PROMPT_DIR = AI_DIR / "prompts"

#: The spec's ai_tasks.valid_type list, in its order (a sync test compares them).
TASK_TYPES = (
    "email_generation",
    "email_reply",
    "summarization",
    "sentiment_analysis",
    "entity_extraction",
    "classification",
    "contact_enrichment",
    "lead_scoring",
    "meeting_summary",
)

#: ai_models.type ('classification' | 'generation' | 'analysis') serving each task type.
MODEL_TYPE: Mapping[str, str] = {
    "email_generation": "generation",
    "email_reply": "generation",
    "summarization": "generation",
    "meeting_summary": "generation",
    "sentiment_analysis": "classification",
    "classification": "classification",
    "lead_scoring": "classification",
    "entity_extraction": "analysis",
    "contact_enrichment": "analysis",
}

#: Output token cap per task type (also the budget estimate of the answer's size).
MAX_OUTPUT_TOKENS: Mapping[str, int] = {
    "email_generation": 1500,
    "email_reply": 1500,
    "summarization": 1200,
    "meeting_summary": 1500,
    "entity_extraction": 1500,
    "contact_enrichment": 800,
    "lead_scoring": 600,
    "sentiment_analysis": 400,
    "classification": 400,
}

#: Keywords OpenAI's strict mode refuses; stripped from the schema sent, kept for checks.
STRICT_UNSUPPORTED = frozenset({"minLength", "maxLength", "$schema", "$id", "examples"})


class UnknownTaskType(ValueError):
    """A task type outside the spec's list (the CHECK constraint would refuse it too)."""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PROMPT_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json"] = _json
    return env


def provider_schema(schema: Any) -> Any:
    """``schema`` without the keywords strict structured output refuses."""
    if isinstance(schema, Mapping):
        return {k: provider_schema(v) for k, v in schema.items() if k not in STRICT_UNSUPPORTED}
    if isinstance(schema, list):
        return [provider_schema(v) for v in schema]
    return schema


def json_path(path: Any) -> str:
    """``$.a[0].b`` for a jsonschema error path."""
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@dataclass(frozen=True)
class TaskType:
    name: str
    schema: Mapping[str, Any]
    version: str
    max_output_tokens: int

    @property
    def schema_name(self) -> str:
        """Name of the JSON schema / tool sent to the provider."""
        return f"{self.name}_result"

    @property
    def sent_schema(self) -> Any:
        return provider_schema(self.schema)

    def render(
        self,
        task_input: Mapping[str, Any],
        record: Mapping[str, Any] | None,
        record_entity: str | None,
    ) -> tuple[str, str]:
        """(system prompt, user prompt) for this input and record snapshot."""
        env = _environment()
        context = {
            "input": dict(task_input),
            "record": dict(record) if record else None,
            "record_entity": record_entity,
            "task_type": self.name,
            "schema_name": self.schema_name,
        }
        system = env.get_template("system.jinja").render(context).strip()
        prompt = env.get_template(f"{self.name}.jinja").render(context).strip()
        return system, prompt

    def validate(self, data: Any) -> str | None:
        """None when ``data`` matches the output schema, else the clearest error, with path."""
        validator = Draft202012Validator(self.schema)
        error = best_match(validator.iter_errors(data))
        if error is None:
            return None
        return f"{json_path(error.absolute_path)}: {error.message}"


@cache
def task_type(name: str) -> TaskType:
    """The task type called ``name``; :class:`UnknownTaskType` names the known ones."""
    if name not in TASK_TYPES:
        raise UnknownTaskType(f"unknown AI task type {name!r}; known: {', '.join(TASK_TYPES)}")
    schema_text = (AI_DIR / f"{name}.json").read_text()
    schema = json.loads(schema_text)
    Draft202012Validator.check_schema(schema)
    digest = hashlib.sha256(schema_text.encode())
    for template in ("system.jinja", "_context.jinja", f"{name}.jinja"):
        digest.update((PROMPT_DIR / template).read_bytes())
    return TaskType(name, schema, digest.hexdigest()[:16], MAX_OUTPUT_TOKENS[name])
