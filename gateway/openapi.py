"""The gateway's HTTP surface as an OpenAPI 3.0 document, served at ``GET /openapi.json``.

It describes what the gateway answers, errors included, so that a generic client or a fuzzer
(the test suite runs schemathesis against it) can hold the gateway to it: every error is a
Lambda error (``x-amzn-ErrorType`` and a JSON body), never an unshaped 500.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

ERROR: JSON = {
    "description": "A Lambda error: the x-amzn-ErrorType header names it",
    "headers": {"x-amzn-ErrorType": {"schema": {"type": "string"}}},
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "Type": {"type": "string"},
                    "Message": {"type": "string"},
                    "message": {"type": "string"},
                },
            }
        }
    },
}
ERRORS = {str(code): ERROR for code in (400, 403, 404, 409, 413, 415, 429, 500, 502, 503)}
ANY_JSON: JSON = {"description": "JSON", "content": {"application/json": {"schema": {}}}}
NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "Function name, name:qualifier, or ARN",
    "schema": {"type": "string", "minLength": 1, "maxLength": 170},
}
QUALIFIER = {"name": "Qualifier", "in": "query", "schema": {"type": "string", "maxLength": 128}}
PAGING = [
    {"name": "Marker", "in": "query", "schema": {"type": "string"}},
    {
        "name": "MaxItems",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
    },
]
SIGNED: list[dict[str, list[str]]] = [{"sigv4": []}]
PRODUCER_TARGETS = [
    *(
        f"AmazonSQS.{op}"
        for op in (
            "GetQueueUrl",
            "ListQueues",
            "GetQueueAttributes",
            "SendMessage",
            "SendMessageBatch",
        )
    ),
    "Kinesis_20131202.PutRecord",
    "Kinesis_20131202.PutRecords",
]
PRODUCER_ERROR: JSON = {
    "description": "An SQS or Kinesis error: __type names it (SQS adds x-amzn-query-error)",
    "content": {
        "application/x-amz-json-1.0": {"schema": {"type": "object"}},
        "application/x-amz-json-1.1": {"schema": {"type": "object"}},
    },
}


def _read(summary: str, params: list[JSON]) -> JSON:
    return {
        "get": {
            "summary": summary,
            "security": SIGNED,
            "parameters": params,
            "responses": {"200": ANY_JSON, **ERRORS},
        }
    }


def document() -> JSON:
    """The OpenAPI document (built, not read from a file: the routes are its one source)."""
    invoke = {
        "post": {
            "summary": "Invoke (RequestResponse, Event or DryRun)",
            "security": SIGNED,
            "parameters": [
                NAME,
                QUALIFIER,
                {
                    "name": "X-Amz-Invocation-Type",
                    "in": "header",
                    "schema": {"type": "string", "enum": ["RequestResponse", "Event", "DryRun"]},
                },
                {
                    "name": "X-Amz-Log-Type",
                    "in": "header",
                    "schema": {"type": "string", "enum": ["None", "Tail"]},
                },
            ],
            "requestBody": {"content": {"application/json": {"schema": {}}}},
            "responses": {
                "200": {"description": "The function's result (or its error)"},
                "202": {"description": "Event: accepted, stored durably"},
                "204": {"description": "DryRun: the caller may invoke"},
                **ERRORS,
            },
        }
    }
    url = {
        method: {
            "summary": "Function URL, path form (payload format 2.0)",
            "parameters": [
                {"name": "url_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"default": {"description": "Whatever the function answers"}},
        }
        for method in ("get", "post")
    }
    producers = {
        "post": {
            "summary": "SQS (AWS JSON 1.0) and Kinesis (AWS JSON 1.1) for producers: "
            "GetQueueUrl, ListQueues, GetQueueAttributes, SendMessage, SendMessageBatch, "
            "PutRecord, PutRecords (X-Amz-Target names the operation; SigV4 for sqs or kinesis)",
            "security": SIGNED,
            "parameters": [
                {
                    "name": "X-Amz-Target",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "enum": PRODUCER_TARGETS},
                }
            ],
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": ANY_JSON, **{c: PRODUCER_ERROR for c in ERRORS}},
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "klambda gateway",
            "version": "2015-03-31",
            "description": "The Lambda Invoke API, the read-only control plane, the SQS and "
            "Kinesis producer API, function URLs and metrics, as klambda serves them.",
        },
        "components": {
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "AWS Signature Version 4 (service lambda), or a Kubernetes "
                    "ServiceAccount token for the audience klambda (Bearer)",
                }
            }
        },
        "paths": {
            "/2015-03-31/functions/{name}/invocations": invoke,
            "/2015-03-31/functions/": _read("ListFunctions", PAGING),
            "/2015-03-31/functions/{name}": _read("GetFunction", [NAME, QUALIFIER]),
            "/2015-03-31/functions/{name}/configuration": _read(
                "GetFunctionConfiguration", [NAME, QUALIFIER]
            ),
            "/2015-03-31/functions/{name}/versions": _read(
                "ListVersionsByFunction", [NAME, *PAGING]
            ),
            "/2015-03-31/functions/{name}/aliases": _read("ListAliases", [NAME, *PAGING]),
            "/2015-03-31/functions/{name}/aliases/{alias}": _read(
                "GetAlias",
                [
                    NAME,
                    {"name": "alias", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
            ),
            "/2015-03-31/functions/{name}/policy": _read("GetPolicy", [NAME, QUALIFIER]),
            "/2021-10-31/functions/{name}/url": _read("GetFunctionUrlConfig", [NAME, QUALIFIER]),
            "/2019-09-30/functions/{name}/concurrency": _read("GetFunctionConcurrency", [NAME]),
            "/2015-03-31/event-source-mappings/": _read(
                "ListEventSourceMappings",
                [{"name": "FunctionName", "in": "query", "schema": {"type": "string"}}, *PAGING],
            ),
            "/2015-03-31/event-source-mappings/{uuid}": _read(
                "GetEventSourceMapping",
                [{"name": "uuid", "in": "path", "required": True, "schema": {"type": "string"}}],
            ),
            "/2016-08-19/account-settings/": _read("GetAccountSettings", []),
            "/lambda-url/{url_id}/": url,
            "/": producers,
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text/plain; version=0.0.4"}},
                }
            },
        },
    }
