"""The OpenAPI 3.1 document of ``haste web``, served at ``/openapi.json``.

Written out rather than generated from docstrings: it is the contract webhook senders and
the CRM code against, so it is reviewed as a whole, and its request schemas are the very
ones the handlers validate bodies with (:func:`request_schema`), so the document and the
validation cannot disagree. ``tests/test_web_api.py`` runs schemathesis against it.
"""

from __future__ import annotations

from typing import Any

from engine import __version__

UUID = {"type": "string", "format": "uuid"}
INSTANT = {"type": "string", "format": "date-time"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; `code` is stable, `detail` is for people.",
        "required": ["status", "code", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "code": {"type": "string"},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "pointer": {"type": "string", "description": "JSON pointer"},
                        "detail": {"type": "string"},
                    },
                },
            },
        },
    },
    "Automation": {
        "type": "object",
        "required": ["id", "name", "trigger_type", "enabled"],
        "properties": {
            "id": UUID,
            "name": {"type": "string"},
            "trigger_type": {"type": "string"},
            "enabled": {"type": "boolean"},
            "current_version": _nullable({"type": "integer"}),
            "run_count": _nullable({"type": "integer"}),
            "success_count": _nullable({"type": "integer"}),
            "error_count": _nullable({"type": "integer"}),
            "last_run_at": _nullable(INSTANT),
            "next_run_at": _nullable(INSTANT),
        },
    },
    "AutomationDetail": {
        "allOf": [
            {"$ref": "#/components/schemas/Automation"},
            {
                "type": "object",
                "properties": {
                    "description": _nullable({"type": "string"}),
                    "category": _nullable({"type": "string"}),
                    "run_once": _nullable({"type": "boolean"}),
                    "reenrollment": _nullable({"type": "string"}),
                    "created_at": _nullable(INSTANT),
                    "updated_at": _nullable(INSTANT),
                    "document": _nullable(
                        {"type": "object", "description": "The deployed automation document."}
                    ),
                },
            },
        ],
    },
    "AutomationState": {
        "type": "object",
        "required": ["id", "name", "enabled"],
        "properties": {"id": UUID, "name": {"type": "string"}, "enabled": {"type": "boolean"}},
    },
    "Version": {
        "type": "object",
        "properties": {
            "version": {"type": "integer"},
            "checksum": {"type": "string"},
            "deployed_at": INSTANT,
            "deployed_by_name": _nullable({"type": "string"}),
            "deployed_by_email": _nullable({"type": "string"}),
        },
    },
    "TriggerRequest": {
        "type": "object",
        "description": "One record (`record_id`) or a list (`record_ids`, at most"
        " HASTE_API_BULK_MAX, default 1000), and the input the automation sees as trigger.*.",
        "additionalProperties": False,
        "anyOf": [{"required": ["record_id"]}, {"required": ["record_ids"]}],
        "properties": {
            "record_id": UUID,
            "record_ids": {"type": "array", "items": UUID, "minItems": 1, "maxItems": 10000},
            "input": {"type": "object", "description": "Checked against input_schema."},
        },
    },
    "TriggerResult": {
        "type": "object",
        "required": ["automation_id", "entity_type", "events"],
        "properties": {
            "automation_id": UUID,
            "automation": {"type": "string"},
            "entity_type": {"type": "string"},
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"record_id": UUID, "event_id": {"type": "integer"}},
                },
            },
        },
    },
    "RedriveRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["since"],
        "properties": {
            "status": {"enum": ["failed", "cancelled", "completed"], "default": "failed"},
            "since": {**INSTANT, "description": "Executions queued since this instant."},
            "dry_run": {"type": "boolean", "default": False, "description": "Only count."},
        },
    },
    "RedriveResult": {
        "type": "object",
        "required": ["count", "execution_ids", "dry_run"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "count": {"type": "integer"},
            "execution_ids": {"type": "array", "items": UUID},
        },
    },
    "ExecutionSummary": {
        "type": "object",
        "required": ["id", "status", "automation_id", "queued_at"],
        "properties": {
            "id": UUID,
            "status": {
                "enum": ["queued", "running", "waiting", "completed", "failed", "cancelled"]
            },
            "automation_id": UUID,
            "automation": {"type": "string"},
            "workspace": {"type": "string"},
            "trigger_entity_type": _nullable({"type": "string"}),
            "trigger_entity_id": _nullable(UUID),
            "queued_at": INSTANT,
            "started_at": _nullable(INSTANT),
            "completed_at": _nullable(INSTANT),
            "duration_ms": _nullable({"type": "integer"}),
            "attempt": {"type": "integer"},
            "recoveries": {"type": "integer"},
            "reruns": {"type": "integer"},
            "error_message": _nullable({"type": "string"}),
        },
    },
    "ExecutionPage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/ExecutionSummary"}},
            "next_cursor": _nullable(
                {"type": "string", "description": "Pass as `cursor` for the next (older) page."}
            ),
        },
    },
    "Step": {
        "type": "object",
        "properties": {
            "step_id": {"type": "string"},
            "type": {"type": "string"},
            "status": {"type": "string"},
            "attempts": {"type": "integer"},
            "idempotency_key": _nullable({"type": "string"}),
            "input": {"description": "The rendered parameters."},
            "output": {},
            "error": {},
            "attempt_history": {},
            "started_at": _nullable(INSTANT),
            "finished_at": _nullable(INSTANT),
            "duration_ms": _nullable({"type": "integer"}),
        },
    },
    "Execution": {
        "type": "object",
        "required": ["id", "status", "automation_id", "steps"],
        "properties": {
            "id": UUID,
            "status": {"type": "string"},
            "automation_id": UUID,
            "automation": {"type": "string"},
            "automation_version": _nullable({"type": "integer"}),
            "event_id": _nullable({"type": "integer"}),
            "trigger_entity_type": _nullable({"type": "string"}),
            "trigger_entity_id": _nullable(UUID),
            "error_message": _nullable({"type": "string"}),
            "error_details": {},
            "context": {},
            "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
        },
    },
    "RerunRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "from_step": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "pattern": "^[^\\u0000]*$",
                "description": "Run again from this step; committed steps before it are kept.",
            }
        },
    },
    "ExecutionState": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": UUID, "status": {"type": "string"}},
    },
    "Decision": {
        "type": "object",
        "required": ["event_id", "outcome", "description"],
        "properties": {
            "event_id": {"type": "integer"},
            "created_at": INSTANT,
            "outcome": {"type": "string"},
            "detail": {},
            "execution_id": _nullable(UUID),
            "automation_version": _nullable({"type": "integer"}),
            "automation": _nullable({"type": "string"}),
            "entity_type": _nullable({"type": "string"}),
            "entity_id": _nullable(UUID),
            "description": {"type": "string", "description": "The decision in one sentence."},
        },
    },
    "WebhookAccepted": {
        "type": "object",
        "required": ["status", "event_id", "webhook_id"],
        "properties": {
            "status": {"const": "accepted"},
            "event_id": {"type": "integer"},
            "webhook_id": {"type": "string"},
        },
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"enum": ["ready", "not_ready"]},
            "checks": {"type": "object"},
            "scheduler": {"type": "object"},
        },
    },
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _items(name: str, description: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref(name)}},
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


COMMON = {
    "401": _problem("No live API key in `Authorization: Bearer`."),
    "503": _problem("The database is unavailable; retry later."),
}
NOT_FOUND = _problem("Not found in the key's workspace (or not at all).")
INVALID = _problem("Invalid parameters; `errors` name each with a JSON pointer.")
REF = {
    "name": "ref",
    "in": "path",
    "required": True,
    "description": "Automation id or name.",
    "schema": {"type": "string", "minLength": 1},
}
EXECUTION_ID = {"name": "id", "in": "path", "required": True, "schema": UUID}
LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 200},
}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    op_id: str,
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
    body_required: bool = False,
    tag: str = "api",
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "responses": {**responses, **(COMMON if tag == "api" else {})},
    }
    if tag == "api":
        operation["security"] = [{"apiKey": []}]
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


PATHS: dict[str, Any] = {
    "/api/v1/automations": {
        "get": _op(
            "List the workspace's automations.",
            {"200": _items("Automation", "Automations, by name.")},
            op_id="listAutomations",
        )
    },
    "/api/v1/automations/{ref}": {
        "get": _op(
            "One automation with its deployed document.",
            {"200": _json("AutomationDetail", "The automation."), "404": NOT_FOUND},
            op_id="showAutomation",
            parameters=[REF],
        )
    },
    "/api/v1/automations/{ref}/versions": {
        "get": _op(
            "Every deployed version of an automation.",
            {"200": _items("Version", "Versions, oldest first."), "404": NOT_FOUND},
            op_id="listAutomationVersions",
            parameters=[REF],
        )
    },
    "/api/v1/automations/{ref}/enable": {
        "post": _op(
            "Enable an automation (the trigger-cycle check runs again).",
            {
                "200": _json("AutomationState", "Enabled."),
                "404": NOT_FOUND,
                "409": _problem("Enabling would close a trigger cycle."),
            },
            op_id="enableAutomation",
            parameters=[REF],
        )
    },
    "/api/v1/automations/{ref}/disable": {
        "post": _op(
            "Disable an automation.",
            {"200": _json("AutomationState", "Disabled."), "404": NOT_FOUND},
            op_id="disableAutomation",
            parameters=[REF],
        )
    },
    "/api/v1/automations/{ref}/trigger": {
        "post": _op(
            "Run a manual automation on one record or a list (one event per record).",
            {
                "202": _json("TriggerResult", "Events written; the listener takes it from here."),
                "404": _problem("No such automation, or a record not found in the workspace."),
                "409": _problem("Not a manual automation, or disabled."),
                "413": _problem("Body too large."),
                "415": _problem("Body is not application/json."),
                "422": INVALID,
                "400": _problem("Body is not JSON."),
            },
            op_id="triggerAutomation",
            parameters=[REF],
            body="TriggerRequest",
            body_required=True,
        )
    },
    "/api/v1/automations/{ref}/redrive": {
        "post": _op(
            "Re-run, in bulk, the automation's executions in a state since an instant.",
            {
                "200": _json("RedriveResult", "Re-queued (or counted, with dry_run)."),
                "404": NOT_FOUND,
                "409": _problem("An execution could not be re-run."),
                "413": _problem("Body too large."),
                "415": _problem("Body is not application/json."),
                "422": INVALID,
                "400": _problem("Body is not JSON."),
            },
            op_id="redriveAutomation",
            parameters=[REF],
            body="RedriveRequest",
            body_required=True,
        )
    },
    "/api/v1/executions": {
        "get": _op(
            "Executions, newest first, with cursor pagination.",
            {"200": _json("ExecutionPage", "A page."), "422": INVALID},
            op_id="listExecutions",
            parameters=[
                {
                    "name": "automation",
                    "in": "query",
                    "description": "Automation id or name.",
                    "schema": {"type": "string"},
                },
                {
                    "name": "status",
                    "in": "query",
                    "schema": {
                        "enum": ["queued", "running", "waiting", "completed", "failed", "cancelled"]
                    },
                },
                {
                    "name": "since",
                    "in": "query",
                    "description": "Queued at or after.",
                    "schema": INSTANT,
                },
                {
                    "name": "until",
                    "in": "query",
                    "description": "Queued before.",
                    "schema": INSTANT,
                },
                LIMIT,
                {
                    "name": "cursor",
                    "in": "query",
                    "description": "next_cursor of the previous page.",
                    "schema": {"type": "string"},
                },
            ],
        )
    },
    "/api/v1/executions/{id}": {
        "get": _op(
            "One execution with each step's input, output, error and attempts.",
            {"200": _json("Execution", "The execution."), "404": NOT_FOUND},
            op_id="getExecution",
            parameters=[EXECUTION_ID],
        )
    },
    "/api/v1/executions/{id}/rerun": {
        "post": _op(
            "Queue a finished execution again, from its failed steps or from from_step.",
            {
                "202": _json("ExecutionState", "Queued again."),
                "404": NOT_FOUND,
                "409": _problem("Not finished, or re-enrollment forbids it now."),
                "413": _problem("Body too large."),
                "415": _problem("Body is not application/json."),
                "422": INVALID,
                "400": _problem("Body is not JSON."),
            },
            op_id="rerunExecution",
            parameters=[EXECUTION_ID],
            body="RerunRequest",
        )
    },
    "/api/v1/executions/{id}/cancel": {
        "post": _op(
            "Cancel a queued, running or waiting execution.",
            {
                "200": _json("ExecutionState", "Cancelled."),
                "404": NOT_FOUND,
                "409": _problem("Already finished."),
            },
            op_id="cancelExecution",
            parameters=[EXECUTION_ID],
        )
    },
    "/api/v1/decisions": {
        "get": _op(
            "The decision log of one record: why each automation did or did not run.",
            {"200": _items("Decision", "Newest first."), "422": INVALID},
            op_id="recordDecisions",
            parameters=[
                {
                    "name": "record",
                    "in": "query",
                    "required": True,
                    "description": "`<kind>/<uuid>`, e.g. contacts/0b5c…",
                    "schema": {
                        "type": "string",
                        "pattern": "^(contacts?|compan(y|ies)|deals?|emails?|tasks?|notes?)/"
                        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
                    },
                },
                LIMIT,
            ],
        )
    },
    "/api/v1/events/{id}/decisions": {
        "get": _op(
            "The decision log of one event.",
            {"200": _items("Decision", "One per candidate automation."), "404": NOT_FOUND},
            op_id="eventDecisions",
            parameters=[
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
        )
    },
    "/hooks/{token}": {
        "post": {
            "operationId": "receiveWebhook",
            "tags": ["webhooks"],
            "summary": "Standard Webhooks intake of a `webhook` automation.",
            "description": "Signed with one of the endpoint's secrets (`haste webhook secret`)."
            " The same webhook-id twice starts one run; the second request gets the first"
            " answer back with `Idempotent-Replayed: true`.",
            "parameters": [
                {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "webhook-id",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                },
                {
                    "name": "webhook-timestamp",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "Unix seconds; at most 5 minutes off.",
                },
                {
                    "name": "webhook-signature",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "`v1,<base64 HMAC-SHA256>`, space-separated if several.",
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "202": _json("WebhookAccepted", "In the outbox (or the first answer, replayed)."),
                "400": _problem("Malformed body or webhook-id."),
                "401": _problem("Missing or bad signature, or timestamp outside 5 minutes."),
                "404": _problem("No webhook at this address."),
                "409": _problem("The automation is disabled."),
                "413": _problem("Body larger than HASTE_WEBHOOK_MAX_BYTES."),
                "415": _problem("Not application/json."),
                "422": _problem("payload_schema not satisfied; `errors` carry JSON pointers."),
                "503": _problem("The database is unavailable; retry later."),
            },
        }
    },
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "tags": ["operations"],
            "summary": "The process is alive (no dependency is checked).",
            "responses": {"200": {"description": "Alive."}},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "tags": ["operations"],
            "summary": "Database and Redis reachable, migrations current.",
            "responses": {
                "200": _json("Readiness", "Ready."),
                "503": _json("Readiness", "Not ready; `checks` says why."),
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "tags": ["operations"],
            "summary": "Prometheus metrics of this host's haste processes.",
            "responses": {
                "200": {"description": "Text exposition format.", "content": {"text/plain": {}}}
            },
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "haste",
        "version": __version__,
        "description": "The automation engine of hasteCRM: webhooks, manual triggers,"
        " execution history, the decision log. Guide: docs/api.md.",
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "A workspace API key (`haste apikey create`).",
            }
        },
    },
}


def request_schema(name: str) -> dict[str, Any]:
    """A request body schema of the document, as handlers validate with it (they have no
    $refs, so they stand alone)."""
    return SCHEMAS[name]
