"""The producers' door to queues and streams: SQS's and Kinesis's JSON APIs on the gateway.

boto3's ``sqs`` and ``kinesis`` clients, the AWS CLI and any SDK send to klambda's Queues and
Streams here (``POST /`` with ``X-Amz-Target: AmazonSQS.SendMessage``,
``Kinesis_20131202.PutRecords``, ...), signed with SigV4 for service ``sqs`` or ``kinesis``
and authorized by the caller's policies (``sqs:SendMessage`` on the queue's ARN,
``kinesis:PutRecord(s)`` on the stream's). A caller reaches only its own namespace's queues
and streams: Redis stays the platform's, and no producer needs its password.

Operations: SQS GetQueueUrl, ListQueues, GetQueueAttributes, SendMessage, SendMessageBatch;
Kinesis PutRecord, PutRecords. Requests are checked by ``producer_requests``; writes go
through the queue engine, durable before the answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from klambda.api.arn import queue_arn, stream_arn
from klambda.api.routes import Intake
from klambda.gateway import producer_requests as checks
from klambda.gateway.auth import Authenticator, Identity, authorize, context_keys
from klambda.gateway.errors import AccessDenied, AuthError, LambdaError
from klambda.gateway.fifo_queues import queue_for, send_message
from klambda.gateway.producer_requests import ProducerError
from klambda.gateway.requests import read_body
from klambda.gateway.routing import RoutingTable
from klambda.gateway.sqs_records import md5_of_attributes
from klambda.gateway.stream_records import shard_id
from klambda.gateway.streams import Stream

log = logging.getLogger(__name__)

SQS_TARGET = "AmazonSQS"
KINESIS_TARGET = "Kinesis_20131202"
MAX_REQUEST = 6 * 1024 * 1024
"""Bytes a request may carry: a full PutRecords (5 MiB of data, base64 in JSON)."""
QUEUE_ATTRIBUTES = (
    "QueueArn",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "FifoQueue",
    "ContentBasedDeduplication",
)

Handler = Callable[[web.Request, Identity, dict[str, Any]], Awaitable[dict[str, Any]]]


class ProducerApi:
    def __init__(
        self,
        table: RoutingTable,
        redis_client: aioredis.Redis | None,
        authenticator: Authenticator,
        region: str,
        new_request_id: Callable[[], str],
    ) -> None:
        self.table = table
        self.redis = redis_client
        self.authenticator = authenticator
        self.region = region
        self.new_request_id = new_request_id
        self._sqs: dict[str, Handler] = {
            "GetQueueUrl": self.get_queue_url,
            "ListQueues": self.list_queues,
            "GetQueueAttributes": self.get_queue_attributes,
            "SendMessage": self.send_message,
            "SendMessageBatch": self.send_message_batch,
        }
        self._kinesis: dict[str, Handler] = {
            "PutRecord": self.put_record,
            "PutRecords": self.put_records,
        }

    def mount(self, app: web.Application) -> None:
        app.router.add_post("/", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        request_id = self.new_request_id()
        prefix, _, operation = request.headers.get("X-Amz-Target", "").partition(".")
        sqs = prefix == SQS_TARGET
        try:
            try:
                handlers = {SQS_TARGET: self._sqs, KINESIS_TARGET: self._kinesis}.get(prefix)
                handler = handlers.get(operation) if handlers else None
                if handler is None:
                    raise ProducerError(
                        "UnknownOperationException",
                        f"Operation {operation or request.headers.get('X-Amz-Target', '')!r} "
                        "is not supported by klambda (SQS: "
                        f"{', '.join(self._sqs)}; Kinesis: {', '.join(self._kinesis)})",
                    )
                body = await read_body(request, MAX_REQUEST)
                identity = await self.authenticator.authenticate(
                    request, body, "sqs" if sqs else "kinesis"
                )
                answer = await handler(request, identity, _json_body(body))
            except AccessDenied as e:
                raise ProducerError(
                    "AccessDeniedException", e.message, 403 if sqs else 400, "AccessDenied"
                ) from None
            except AuthError as e:
                raise ProducerError(e.error_type, e.message, 403 if sqs else 400) from None
            except LambdaError as e:  # a body over the limit
                raise ProducerError("RequestTooLarge", e.message, e.status) from None
            except RedisError as e:
                log.warning("request %s: Redis failed: %s", request_id, e)
                raise ProducerError(
                    "InternalFailure" if sqs else "InternalFailureException",
                    "The queue store failed; nothing was written. Try again.",
                    500,
                    sender_fault=False,
                ) from None
        except ProducerError as e:
            return _error(e, sqs, request_id)
        return _answer(answer, sqs, request_id)

    # ------------------------------------------------------------------ SQS

    async def get_queue_url(
        self, request: web.Request, identity: Identity, body: dict[str, Any]
    ) -> dict[str, Any]:
        name = body.get("QueueName")
        if not isinstance(name, str) or not name:
            raise checks.missing("QueueName")
        account = str(body.get("QueueOwnerAWSAccountId") or identity.principal.account)
        queue = self._queue(request, identity, account, name, "sqs:GetQueueUrl")
        return {"QueueUrl": self._queue_url(request, queue)}

    async def list_queues(
        self, request: web.Request, identity: Identity, body: dict[str, Any]
    ) -> dict[str, Any]:
        p = identity.principal
        resource = queue_arn(self.region, p.account, "*")
        context = context_keys(request, identity)
        authorize(identity, "sqs:ListQueues", resource, p.account, None, context, p.namespace)
        prefix = str(body.get("QueueNamePrefix") or "")
        size = body.get("MaxResults") or 1000
        if not isinstance(size, int) or not 1 <= size <= 1000:
            raise checks.invalid("Value for parameter MaxResults is invalid. Reason: 1 to 1000.")
        names = [q for q in self.table.intakes("Queue", p.namespace) if q.name.startswith(prefix)]
        start = int(body["NextToken"]) if str(body.get("NextToken") or "").isdigit() else 0
        out: dict[str, Any] = {
            "QueueUrls": [self._queue_url(request, q) for q in names[start : start + size]]
        }
        if start + size < len(names):
            out["NextToken"] = str(start + size)
        return out

    async def get_queue_attributes(
        self, request: web.Request, identity: Identity, body: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._queue_of_url(request, identity, body, "sqs:GetQueueAttributes")
        wanted = body.get("AttributeNames") or ["All"]
        unknown = [n for n in wanted if n != "All" and n not in QUEUE_ATTRIBUTES]
        if unknown:
            raise ProducerError(
                "InvalidAttributeName",
                f"Unknown Attribute {unknown[0]}.",
                query_code="InvalidAttributeName",
            )
        counts = await queue_for(self._redis(), queue.key, queue.fifo).counts()
        values = {
            "QueueArn": queue.arn,
            "ApproximateNumberOfMessages": counts.visible,
            "ApproximateNumberOfMessagesNotVisible": counts.in_flight,
            "ApproximateNumberOfMessagesDelayed": counts.delayed,
            "VisibilityTimeout": queue.visibility_timeout,
            "MessageRetentionPeriod": queue.retention,
            "DelaySeconds": queue.delay_seconds,
        }
        if queue.fifo:
            values["FifoQueue"] = "true"
            values["ContentBasedDeduplication"] = str(queue.content_based_deduplication).lower()
        names = QUEUE_ATTRIBUTES if "All" in wanted else wanted
        return {"Attributes": {n: str(values[n]) for n in names if n in values}}

    async def send_message(
        self, request: web.Request, identity: Identity, body: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._queue_of_url(request, identity, body, "sqs:SendMessage")
        return await self._send(queue, checks.sqs_message(queue, body))

    async def send_message_batch(
        self, request: web.Request, identity: Identity, body: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._queue_of_url(request, identity, body, "sqs:SendMessage")
        successful, failed = [], []
        for entry in checks.batch_entries(body.get("Entries")):
            try:
                message = checks.sqs_message(queue, entry)
            except ProducerError as e:
                code = e.query_code or e.shape
                failed.append(
                    {"Id": entry["Id"], "SenderFault": True, "Code": code, "Message": e.message}
                )
                continue
            successful.append({"Id": entry["Id"], **await self._send(queue, message)})
        return {"Successful": successful, "Failed": failed}

    async def _send(self, queue: Intake, message: checks.SqsMessage) -> dict[str, Any]:
        engine = queue_for(self._redis(), queue.key, queue.fifo)
        message_id = await send_message(
            engine, message.fields, message.delay, message.deduplication_id
        )
        body = message.fields["body"]
        out = {
            "MessageId": message_id,
            "MD5OfMessageBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        }
        if message.attributes:
            out["MD5OfMessageAttributes"] = md5_of_attributes(message.attributes)
        return out

    def _queue_of_url(
        self, request: web.Request, identity: Identity, body: dict[str, Any], action: str
    ) -> Intake:
        url = body.get("QueueUrl")
        if not isinstance(url, str) or not url:
            raise checks.missing("QueueUrl")
        parts = [p for p in urlsplit(url).path.split("/") if p]
        if len(parts) >= 2:
            account, name = parts[-2], parts[-1]
        elif len(parts) == 1 and "://" not in url:  # a bare name: the caller's own queue
            account, name = identity.principal.account, parts[0]
        else:
            raise ProducerError(
                "InvalidAddress", f"The address {url} is not valid for this endpoint."
            )
        return self._queue(request, identity, account, name, action)

    def _queue(
        self, request: web.Request, identity: Identity, account: str, name: str, action: str
    ) -> Intake:
        queue = self._find(request, identity, "Queue", account, name, action)
        if queue is None:
            raise ProducerError(
                "QueueDoesNotExist",
                "The specified queue does not exist.",
                query_code="AWS.SimpleQueueService.NonExistentQueue",
            )
        return queue

    def _queue_url(self, request: web.Request, queue: Intake) -> str:
        return (
            f"{request.scheme}://{request.host}/{self.table.account(queue.namespace)}/{queue.name}"
        )

    # ------------------------------------------------------------------ Kinesis

    async def put_record(
        self, request: web.Request, identity: Identity, body: dict[str, Any]
    ) -> dict[str, Any]:
        stream = self._stream(request, identity, body, "kinesis:PutRecord")
        records = checks.kinesis_records([body])
        [(shard, sequence)] = await self._put(stream, records, [body.get("ExplicitHashKey")])
        return {"ShardId": shard_id(shard), "SequenceNumber": sequence, "EncryptionType": "NONE"}

    async def put_records(
        self, request: web.Request, identity: Identity, body: dict[str, Any]
    ) -> dict[str, Any]:
        stream = self._stream(request, identity, body, "kinesis:PutRecords")
        given = body.get("Records")
        records = checks.kinesis_records(given)
        assert isinstance(given, list)
        placed = await self._put(stream, records, [r.get("ExplicitHashKey") for r in given])
        return {
            "FailedRecordCount": 0,
            "Records": [{"SequenceNumber": seq, "ShardId": shard_id(sh)} for sh, seq in placed],
            "EncryptionType": "NONE",
        }

    async def _put(
        self, stream: Intake, records: list[tuple[str, bytes]], hash_keys: list[Any]
    ) -> list[tuple[int, str]]:
        engine = Stream(self._redis(), stream.key, stream.shards, stream.retention_hours)
        try:
            if not any(hash_keys):
                return await engine.put(records)
            placed = []  # each record with its own ExplicitHashKey
            for record, key in zip(records, hash_keys, strict=True):
                placed += await engine.put([record], str(key) if key is not None else None)
            return placed
        except ValueError as e:  # an ExplicitHashKey out of range
            raise ProducerError("InvalidArgumentException", str(e)) from None

    def _stream(
        self, request: web.Request, identity: Identity, body: dict[str, Any], action: str
    ) -> Intake:
        arn_given = body.get("StreamARN")
        if isinstance(arn_given, str) and arn_given:
            head, _, name = arn_given.partition(":stream/")
            fields = head.split(":")
            if len(fields) != 5 or not name:
                raise checks.validation("streamARN", "Member must satisfy the ARN pattern")
            account = fields[4]
        else:
            given = body.get("StreamName")
            if not isinstance(given, str) or not given:
                raise ProducerError(
                    "InvalidArgumentException", "Either StreamName or StreamARN is required."
                )
            name, account = given, identity.principal.account
        stream = self._find(request, identity, "Stream", account, name, action)
        if stream is None:
            raise ProducerError(
                "ResourceNotFoundException", f"Stream {name} under account {account} not found."
            )
        return stream

    # ------------------------------------------------------------------ both

    def _find(
        self,
        request: web.Request,
        identity: Identity,
        kind: str,
        account: str,
        name: str,
        action: str,
    ) -> Intake | None:
        """The queue or stream, once the caller may act on it (authorization before
        existence: a caller learns nothing of queues and streams it may not use). "Same
        account" is the same namespace, never the derived id alone."""
        p = identity.principal
        namespace = p.namespace if account == p.account else self.table.intake_namespace(account)
        arn = (queue_arn if kind == "Queue" else stream_arn)(self.region, account, name)
        authorize(identity, action, arn, account, None, context_keys(request, identity), namespace)
        return self.table.intake(kind, namespace or "", name)

    def _redis(self) -> aioredis.Redis:
        if self.redis is None:
            raise ProducerError(
                "ServiceUnavailable",
                "This gateway has no Redis (--redis-url): queues and streams are unavailable.",
                503,
                sender_fault=False,
            )
        return self.redis


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ProducerError("SerializationException", "The request body is not a JSON object.")
    return parsed


def _content_type(sqs: bool) -> str:
    return "application/x-amz-json-1.0" if sqs else "application/x-amz-json-1.1"


def _answer(body: dict[str, Any], sqs: bool, request_id: str) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type=_content_type(sqs),
        headers={"x-amzn-RequestId": request_id},
    )


def _error(e: ProducerError, sqs: bool, request_id: str) -> web.Response:
    """AWS's JSON error: ``__type`` and ``message``; SQS adds its query-protocol code, which
    boto3 reports as the error code (``AWS.SimpleQueueService.NonExistentQueue``)."""
    headers = {"x-amzn-RequestId": request_id}
    shape = e.shape
    if sqs:
        shape = f"com.amazonaws.sqs#{e.shape}"
        fault = "Sender" if e.sender_fault else "Receiver"
        headers["x-amzn-query-error"] = f"{e.query_code or e.shape};{fault}"
    return web.Response(
        status=e.status,
        body=json.dumps({"__type": shape, "message": e.message}).encode(),
        content_type=_content_type(sqs),
        headers=headers,
    )
