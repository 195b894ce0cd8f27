"""GET /api/v1/openapi.json: the hand-written OpenAPI 3.0 document of this API (a test checks it has every route)."""

from __future__ import annotations

from typing import Any

from flask.wrappers import Response

from finetune.vocabulary import TASKS
from monitor.vocabulary import ALERT_STATES, RULE_KINDS, SEVERITIES, MessageStatus
from newsdesk.interactions import LIVE_KINDS
from web.api import bp, ok

ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad request", 401: "Missing or invalid bearer token", 403: "Role does not allow it",
            404: "Not found", 409: "Conflict", 413: "Body too large", 422: "Invalid input",
            503: "A service or model is not available yet"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": ERROR}}} for c in codes}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    # `?limit=` (empty) means the default, as the server reads it
    return {"name": name, "in": "query", "required": False, "allowEmptyValue": True, "schema": schema,
            "description": description}


def _complete(paths: dict[str, Any]) -> dict[str, Any]:
    """Responses every operation can give: 422 (the request guard: NUL bytes, lone surrogates, deep JSON), 413 on
    a body over the size limit, 404 where the path names something."""
    for path, operations in paths.items():
        for method, operation in operations.items():
            if path == "/openapi.json":
                continue
            extra = [422] + ([413] if method in ("post", "put", "patch") else []) + ([404] if "{" in path else [])
            for code in extra:
                operation["responses"].setdefault(str(code), _errors(code)[str(code)])
    return paths


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


OBJ = {"type": "object", "additionalProperties": True}
PAGE = {"type": "object", "properties": {"items": {"type": "array", "items": OBJ}, "total": {"type": "integer"},
                                         "limit": {"type": "integer"}, "offset": {"type": "integer"},
                                         "next_offset": {"type": "integer", "nullable": True}}}
NSTR = {"type": "string", "nullable": True}
STRS = {"type": "array", "items": {"type": "string"}}
TIME = {"type": "string", "format": "date-time"}
TOPIC = {"type": "string", "maxLength": 64, "nullable": True,
         "description": "the topic the served model gave (null: no topic head, or not classified yet)"}
MESSAGE = {"type": "object", "properties": {
    "id": {"type": "integer"}, "ts": TIME, "received_at": TIME, "source": {"type": "string"}, "source_id": NSTR,
    "text": {"type": "string"}, "tickers": STRS,
    "status": {"type": "string", "enum": [m.value for m in MessageStatus]},
    "label": NSTR, "scores": {"type": "object", "nullable": True, "additionalProperties": {"type": "number"}},
    "model_version": NSTR, "lang": {"type": "string"}, "flag": NSTR, "topic": TOPIC,
    "topic_score": {"type": "number", "nullable": True, "description": "the topic's probability"}}}
ALERT = {"type": "object", "additionalProperties": True, "properties": {
    "id": {"type": "integer"}, "fingerprint": {"type": "string"}, "rule_id": {"type": "integer"},
    "rule_name": {"type": "string"}, "kind": {"type": "string"}, "ticker": {"type": "string"},
    "topic": {**TOPIC, "description": "the topic of a topic-scoped rule's alert (null: the rule has no topic scope)"},
    "state": {"type": "string"}, "severity": {"type": "string"}, "summary": {"type": "string"},
    "values": {"type": "object"}, "started_at": TIME, "updated_at": TIME}}
RULE = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "kind": {"type": "string"}, "enabled": {"type": "boolean"},
    "params": {"type": "object"}, "tickers": STRS,
    "topics": {**STRS, "description": "empty: every message counts; else one evaluation and alert per topic"},
    "severity": {"type": "string"}, "repeat_interval_s": {"type": "integer"}}}


def _rule_body(create: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "name": {"type": "string", "minLength": 1, "maxLength": 128}, "params": {"type": "object"},
        "tickers": {"type": "array", "maxItems": 50, "items": {"type": "string", "maxLength": 16}},
        "topics": {"type": "array", "maxItems": 50, "items": {"type": "string", "maxLength": 64}},
        "severity": {"type": "string", "enum": list(SEVERITIES)},
        "repeat_interval_s": {"type": "integer", "minimum": 60, "maximum": 2592000}, "enabled": {"type": "boolean"}}
    if create:
        props["kind"] = {"type": "string", "enum": list(RULE_KINDS)}
        return {"type": "object", "required": ["name", "kind"], "properties": props, "additionalProperties": False}
    return {"type": "object", "properties": props, "additionalProperties": False}


RULE_ID = {"name": "rule_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
DEAD_LETTER_ID = {"name": "dead_letter_id", "in": "path", "required": True,
                  "schema": {"type": "integer", "minimum": 1}}
ALERT_ID = {"name": "alert_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
TASK = {"name": "task", "in": "path", "required": True, "schema": {"type": "string", "enum": list(TASKS)}}
USER_Q = _query("user", {"type": "string", "maxLength": 128}, "another user's (admins only)")


# monitor.ingest's limits (web may import only service modules; kept in step by hand, see validate_payload)
MAX_TEXT_CHARS, MAX_ID_CHARS, MAX_SOURCE_CHARS, MAX_TICKERS = 10_000, 128, 64, 20
TICKER = {"type": "string", "pattern": "^\\$?[A-Za-z][A-Za-z0-9.\\-]{0,15}$"}
INGEST_MESSAGE = {  # what monitor.ingest.validate_payload accepts; other fields are kept as the message's metadata
    "type": "object", "required": ["text"], "additionalProperties": True,
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS, "description": "The message text."},
        "id": {"oneOf": [{"type": "string", "maxLength": MAX_ID_CHARS}, {"type": "integer"}],
               "description": "The source's id; with `source` it makes a re-sent message a duplicate, not a new one."},
        "ts": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
               "description": "ISO 8601 (UTC if no offset) or epoch seconds; the arrival time when missing."},
        "source": {"type": "string", "pattern": "^[\\w.:\\-]{1,64}$", "maxLength": MAX_SOURCE_CHARS,
                   "description": "Feed name; stored under the token's own namespace (api:<token user>:<source>)."},
        "ticker": {"oneOf": [TICKER, {"type": "array", "items": TICKER, "maxItems": MAX_TICKERS}],
                   "description": "Ticker symbol(s); found in the text ($AAPL) when missing. Alias: `tickers`."},
    },
    "example": {"id": "tw-1", "text": "$AAPL beats on revenue", "ts": "2026-12-01T12:00:00Z", "source": "wire",
                "ticker": "AAPL"},
}


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "newsdesk API", "version": "1",
                 "description": "Feeds, feedback, stream ingest, alerts and models. Errors are "
                                "{\"error\": {\"code\", \"message\", \"details\"}}."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearerAuth": []}],
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "`newsdesk users token USER [--kind ingest]`"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message", "details"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                               "details": {"type": "object"}}}}},
                "Message": MESSAGE, "IngestMessage": INGEST_MESSAGE, "Alert": ALERT, "Rule": RULE},
        },
        "paths": _complete({
            "/recommendations": {"get": {
                "summary": "Ranked items for the caller (admins may name a user)", "operationId": "recommendations",
                "parameters": [_query("k", {"type": "integer", "minimum": 1, "maximum": 100}), USER_Q],
                "responses": {"200": _json(OBJ), **_errors(401, 403, 404, 422, 503)}}},
            "/history": {"get": {
                "summary": "The caller's interactions, newest first", "operationId": "history",
                "parameters": [_query("limit", {"type": "integer", "minimum": 1, "maximum": 500}), USER_Q],
                "responses": {"200": _json(OBJ), **_errors(401, 403, 404, 422, 503)}}},
            "/feedback": {"post": {
                "summary": "Log impressions, clicks and not-interested events", "operationId": "feedback",
                "requestBody": _body({"type": "object", "required": ["events"], "properties": {"events": {
                    "type": "array", "minItems": 1, "maxItems": 500, "items": {
                        "type": "object", "required": ["item_id", "kind"],
                        "properties": {"item_id": {"type": "string", "minLength": 1, "maxLength": 128},
                                       "kind": {"type": "string",
                                                "enum": list(LIVE_KINDS)}}}}}}),
                "responses": {"202": _json(OBJ, "Logged"), **_errors(401, 422, 503)}}},
            "/ingest": {"post": {
                "summary": "Ingest financial messages (ingest token)", "operationId": "ingest",
                "requestBody": _body({"oneOf": [
                    {"$ref": "#/components/schemas/IngestMessage"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/IngestMessage"}, "maxItems": 1000}]}),
                "responses": {"202": _json(OBJ, "Queued or stored"), **_errors(401, 413, 422, 503)}}},
            "/alerts": {"get": {
                "summary": "Alerts, newest first, with filters and pagination", "operationId": "listAlerts",
                "parameters": [
                    _query("state", {"type": "string", "enum": list(ALERT_STATES)}),
                    _query("ticker", {"type": "string", "maxLength": 16}),
                    _query("topic", {"type": "string", "maxLength": 64}, "alerts of topic-scoped rules for it"),
                    _query("rule_id", {"type": "integer", "minimum": 1}),
                    _query("since", {"type": "string", "format": "date-time"}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                    _query("offset", {"type": "integer", "minimum": 0})],
                "responses": {"200": _json({**PAGE, "properties": {**PAGE["properties"], "items": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Alert"}}}}),
                    **_errors(401, 403, 422, 503)}}},
            "/alerts/{alert_id}": {"get": {
                "summary": "One alert with its evidence", "operationId": "getAlert", "parameters": [ALERT_ID],
                "responses": {"200": _json({"allOf": [{"$ref": "#/components/schemas/Alert"}, {
                    "type": "object", "properties": {"evidence": {
                        "type": "array", "items": {"$ref": "#/components/schemas/Message"}}}}]}),
                    **_errors(401, 403, 404, 503)}}},
            "/alerts/{alert_id}/ack": {"post": {
                "summary": "Acknowledge an alert", "operationId": "ackAlert", "parameters": [ALERT_ID],
                "requestBody": _body({"type": "object", "properties": {"note": {"type": "string",
                                                                                "maxLength": 2000}}}),
                "responses": {"200": _json(OBJ), **_errors(401, 403, 404, 409, 422, 503)}}},
            "/dead-letters/replay": {"post": {
                "summary": "Replay every open dead letter (optionally by reason text or stage)",
                "operationId": "replayDeadLetters",
                "requestBody": _body({"type": "object", "properties": {
                    "reason": {"type": "string", "maxLength": 200},
                    "stage": {"type": "string", "enum": ["validate", "classify", "process"]}}}),
                "responses": {"200": _json({"type": "object", "properties": {
                    "replayed": {"type": "integer"}, "still_invalid": {"type": "integer"},
                    "ids": {"type": "array", "items": {"type": "integer"}}}}), **_errors(401, 403, 422, 503)}}},
            "/dead-letters/{dead_letter_id}/replay": {"post": {
                "summary": "Replay one open dead letter, optionally with its payload edited",
                "operationId": "replayDeadLetter", "parameters": [DEAD_LETTER_ID],
                "requestBody": _body({"type": "object", "properties": {
                    "payload": {"type": "string", "minLength": 1, "maxLength": 65536,
                                "description": "the raw message line to ingest instead (the received one is kept)"}}}),
                "responses": {"200": _json(OBJ), **_errors(401, 403, 404, 409, 422, 503)}}},
            "/dead-letters/{dead_letter_id}/dismiss": {"post": {
                "summary": "Close one open dead letter without replaying it",
                "operationId": "dismissDeadLetter", "parameters": [DEAD_LETTER_ID],
                "requestBody": _body({"type": "object", "properties": {"note": {"type": "string", "maxLength": 500}}}),
                "responses": {"200": _json(OBJ), **_errors(401, 403, 404, 409, 422, 503)}}},
            "/notifications/undelivered": {"get": {
                "summary": "Webhook notifications not delivered yet (failed, or pending after a failure)",
                "operationId": "undeliveredNotifications",
                "parameters": [_query("limit", {"type": "integer", "minimum": 1, "maximum": 500})],
                "responses": {"200": _json(PAGE), **_errors(401, 403, 422, 503)}}},
            "/notifications/retry": {"post": {
                "summary": "Send undelivered notifications again now (all, or the ids given)",
                "operationId": "retryNotifications",
                "requestBody": _body({"type": "object", "properties": {
                    "ids": {"type": "array", "maxItems": 1000,
                            "items": {"type": "integer", "minimum": 1, "maximum": 2147483647}}}}),
                "responses": {"200": _json({"type": "object", "properties": {"queued": {"type": "integer"}}}),
                              **_errors(401, 403, 422, 503)}}},
            "/alerts/{alert_id}/silence": {"post": {
                "summary": "Silence alerts like this one (same ticker and rule) until a time",
                "operationId": "silenceAlert", "parameters": [ALERT_ID],
                "requestBody": _body({"type": "object", "properties": {
                    "duration_minutes": {"type": "integer", "minimum": 1, "maximum": 43200},
                    "ends_at": {"type": "string", "format": "date-time"},
                    "comment": {"type": "string", "maxLength": 2000}}}),
                "responses": {"201": _json(OBJ, "Silence created"), **_errors(401, 403, 404, 422, 503)}}},
            "/messages": {"get": {
                "summary": "The latest messages with their sentiment and topic, newest first",
                "operationId": "listMessages",
                "parameters": [_query("ticker", {"type": "string", "maxLength": 16}),
                               _query("topic", {"type": "string", "maxLength": 64}),
                               _query("limit", {"type": "integer", "minimum": 1, "maximum": 500})],
                "responses": {"200": _json({"type": "object", "properties": {"items": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Message"}}}}),
                    **_errors(401, 403, 422, 503)}}},
            "/topics": {"get": {
                "summary": "Topics the model has given messages, and those rules are scoped to",
                "operationId": "listTopics",
                "responses": {"200": _json({"type": "object", "properties": {"items": STRS}}),
                              **_errors(401, 403, 503)}}},
            "/rules": {
                "get": {"summary": "Alert rules with their ticker and topic scope", "operationId": "listRules",
                        "responses": {"200": _json({"type": "object", "properties": {"items": {
                            "type": "array", "items": {"$ref": "#/components/schemas/Rule"}}}}),
                            **_errors(401, 403, 503)}},
                "post": {"summary": "Create a rule (parameters not given take the kind's defaults)",
                         "operationId": "createRule", "requestBody": _body(_rule_body(True)),
                         "responses": {"201": _json({"$ref": "#/components/schemas/Rule"}, "Created"),
                                       **_errors(401, 403, 409, 422, 503)}}},
            "/rules/{rule_id}": {"patch": {
                "summary": "Change a rule (params are merged over the current ones)", "operationId": "changeRule",
                "parameters": [RULE_ID], "requestBody": _body(_rule_body(False)),
                "responses": {"200": _json({"$ref": "#/components/schemas/Rule"}),
                              **_errors(401, 403, 404, 422, 503)}}},
            "/models": {"get": {
                "summary": "Model versions (per task)", "operationId": "listModels",
                "parameters": [_query("task", {"type": "string", "enum": list(TASKS)})],
                "responses": {"200": _json(OBJ), **_errors(401, 403, 404, 503)}}},
            "/models/runs": {"get": {
                "summary": "Training runs, newest first", "operationId": "listRuns",
                "parameters": [_query("task", {"type": "string", "enum": list(TASKS)}),
                               _query("limit", {"type": "integer", "minimum": 1, "maximum": 500})],
                "responses": {"200": _json(OBJ), **_errors(401, 403, 404, 422, 503)}}},
            "/models/{task}/promote": {"post": {
                "summary": "Make a version current", "operationId": "promoteModel", "parameters": [TASK],
                "requestBody": _body({"type": "object", "required": ["version"], "properties": {
                    "version": {"type": "string", "minLength": 1, "maxLength": 128}}}),
                "responses": {"200": _json(OBJ), **_errors(401, 403, 404, 409, 422, 503)}}},
            "/models/{task}/rollback": {"post": {
                "summary": "Go back to the previously current version", "operationId": "rollbackModel",
                "parameters": [TASK], "responses": {"200": _json(OBJ), **_errors(401, 403, 404, 409, 503)}}},
            "/models/{task}/retrain": {"post": {
                "summary": "Queue a training run (the worker runs it)", "operationId": "retrainModel",
                "parameters": [TASK], "responses": {"202": _json(OBJ, "Queued"), **_errors(401, 403, 404, 503)}}},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "security": [],
                                      "responses": {"200": _json(OBJ)}}},
        }),
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    return ok(document())
