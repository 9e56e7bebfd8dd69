"""Queues and streams through ``klambda up`` and its CLI, read by handlers written with
aws-lambda-powertools (its SQS/Kinesis event classes and batch processor)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Platform, start_platform, stop_platform, wait_for_reason

FUNCTIONS = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: fifo-reader}
spec:
  runtime: python3.11
  handler: app.handler
  environment: {variables: {OUT: "%(fifo_out)s"}}
  code:
    inline:
      app.py: |
        import json, os
        from aws_lambda_powertools.utilities.batch import (
            SqsFifoPartialProcessor, process_partial_response)
        from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

        # a failure fails the rest of its group (they stay, in order); other groups go on
        processor = SqsFifoPartialProcessor(skip_group_on_error=True)

        def record_handler(record: SQSRecord):
            if record.body == "bad":
                raise ValueError("cannot take it")
            with open(os.environ["OUT"], "a") as f:
                f.write(json.dumps({
                    "body": record.body,
                    "group": record.attributes.message_group_id,
                    "color": (record.message_attributes.get("color") or {}).get("stringValue"),
                }) + "\\n")

        def handler(event, context):
            return process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context)
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: orders.fifo}
spec:
  fifo: true
  contentBasedDeduplication: true
  visibilityTimeout: 3
  redrivePolicy: {deadLetterQueue: orders-dlq.fifo, maxReceiveCount: 2}
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: orders-dlq.fifo}
spec: {fifo: true}
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: orders}
spec:
  functionName: fifo-reader
  source: {queue: orders.fifo}
  # one message a batch: the messages behind a poison one are not received (and counted
  # towards maxReceiveCount, as SQS counts them) while it fails
  batchSize: 1
  functionResponseTypes: [ReportBatchItemFailures]
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: click-reader}
spec:
  runtime: python3.11
  handler: app.handler
  environment: {variables: {OUT: "%(stream_out)s"}}
  code:
    inline:
      app.py: |
        import json, os
        from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent

        def handler(event, context):
            parsed = KinesisStreamEvent(event)
            with open(os.environ["OUT"], "a") as f:
                for record in parsed.records:
                    f.write(json.dumps({
                        "key": record.kinesis.partition_key,
                        "data": record.kinesis.data_as_text(),
                        "shard": record.event_id.split(":")[0],
                        "source": record.event_source,
                    }) + "\\n")
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: tally-reader}
spec:
  runtime: python3.11
  handler: app.handler
  environment: {variables: {OUT: "%(tally_out)s"}}
  code:
    inline:
      app.py: |
        import json, os
        from aws_lambda_powertools.utilities.batch import (
            BatchProcessor, EventType, process_partial_response)
        from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
            KinesisStreamRecord)

        processor = BatchProcessor(event_type=EventType.KinesisDataStreams)

        def record_handler(record: KinesisStreamRecord):
            data = record.kinesis.data_as_text()
            with open(os.environ["OUT"], "a") as f:
                seq = record.kinesis.sequence_number
                f.write(json.dumps({"data": data, "seq": seq}) + "\\n")
            marker = os.environ["OUT"] + ".failed-once"
            if data == "poison" and not os.path.exists(marker):
                open(marker, "w").close()
                raise ValueError("not this time")

        def handler(event, context):
            return process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context)
---
apiVersion: klambda.io/v1alpha1
kind: Stream
metadata: {name: tallies}
spec: {shards: 1}
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: tallies}
spec:
  functionName: tally-reader
  source: {stream: tallies}
  startingPosition: TRIM_HORIZON
  batchSize: 10
  maximumRetryAttempts: 3
  functionResponseTypes: [ReportBatchItemFailures]
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: ticker}
spec:
  runtime: python3.11
  handler: app.handler
  environment: {variables: {OUT: "%(tick_out)s"}}
  code:
    inline:
      app.py: |
        import json, os
        from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

        def handler(event, context):
            parsed = EventBridgeEvent(event)
            with open(os.environ["OUT"], "a") as f:
                f.write(json.dumps({"type": parsed.detail_type, "source": parsed.source,
                                    "resources": parsed.resources, "time": parsed.time}) + "\\n")
---
apiVersion: klambda.io/v1alpha1
kind: Stream
metadata: {name: clicks}
spec: {shards: 2}
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: clicks}
spec:
  functionName: click-reader
  source: {stream: clicks}
  startingPosition: TRIM_HORIZON
  batchSize: 5
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("sources")
    p = start_platform(tmp)
    try:
        manifest = tmp / "sources.yaml"
        outputs = {
            "fifo_out": tmp / "fifo.jsonl",
            "stream_out": tmp / "stream.jsonl",
            "tick_out": tmp / "tick.jsonl",
            "tally_out": tmp / "tally.jsonl",
        }
        manifest.write_text(FUNCTIONS % outputs)
        r = p.cli("apply", "-f", str(manifest))
        assert r.returncode == 0, r.stderr
        for name in ("fifo-reader", "click-reader", "ticker", "tally-reader"):
            wait_for_reason(p, name, "EnvironmentReady")
        yield p
    finally:
        stop_platform(p)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def until(check: Callable[[], Any], timeout: float = 40) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)
    return value


def ok(platform: Platform, *args: str, input: str | None = None) -> str:
    r = platform.cli(*args, input=input)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def output_of(platform: Platform, function: str) -> Path:
    """Where the function writes what it received (its OUT variable)."""
    spec = json.loads(ok(platform, "get", "fn", function, "-o", "json"))["spec"]
    return Path(spec["environment"]["variables"]["OUT"])


def test_a_queue_made_sent_to_received_and_purged_from_the_cli(platform: Platform) -> None:
    assert ok(platform, "queue", "create", "scratch", "--visibility-timeout", "60") == (
        "queue/scratch created\n"
    )
    ids = ok(platform, "queue", "send", "scratch", "one", "two", "--attribute", "color=red")
    assert len(ids.split()) == 2
    stdin_ids = ok(platform, "queue", "send", "scratch", input="three\nfour\n")
    assert len(stdin_ids.split()) == 2  # one message per line of stdin
    received = ok(platform, "queue", "receive", "scratch", "--max", "2")
    assert "one" in received and "two" in received and '"color"' in received
    assert "receives=1" in received

    def status() -> dict[str, Any]:
        return json.loads(ok(platform, "queue", "get", "scratch", "-o", "json"))["status"]

    counts = until(  # filled in by the status refresh (every 5 s)
        lambda: (s := status()).get("approximateNumberOfMessagesNotVisible") and s
    )
    assert counts["approximateNumberOfMessagesNotVisible"] == 2
    assert counts["approximateNumberOfMessages"] == 2
    table = ok(platform, "get", "kq", "scratch").splitlines()
    columns = dict(zip(table[0].split(), table[1].split(), strict=True))
    assert (columns["MESSAGES"], columns["IN-FLIGHT"]) == ("2", "2"), table
    assert ok(platform, "queue", "purge", "scratch") == "queue scratch purged\n"
    assert "no message visible" in ok(platform, "queue", "receive", "scratch")
    assert "visibilityTimeout: 60" in ok(platform, "queue", "describe", "scratch")
    assert ok(platform, "queue", "delete", "scratch") == 'queue "scratch" deleted\n'
    missing = platform.cli("queue", "send", "scratch", "x")
    assert missing.returncode == 1
    assert 'queue "scratch" not found in namespace default' in missing.stderr
    assert "Traceback" not in missing.stderr


def test_fifo_groups_reach_a_powertools_handler_in_order(
    platform: Platform, tmp_path: Path
) -> None:
    out = output_of(platform, "fifo-reader")
    no_group = platform.cli("queue", "send", "orders.fifo", "x")
    assert no_group.returncode == 2 and "--group is required" in no_group.stderr
    for group in ("g1", "g2"):
        bodies = [f"{group}-{i}" for i in range(5)]
        if group == "g2":
            bodies.insert(2, "bad")
        ok(
            platform,
            "queue",
            "send",
            "orders.fifo",
            *bodies,
            "--group",
            group,
            "--attribute",
            "color=blue",
        )
    ok(platform, "queue", "send", "orders.fifo", "g1-0", "--group", "g1")  # deduplicated
    got = until(lambda: len(lines(out)) >= 10 and lines(out))
    by_group: dict[str, list[str]] = defaultdict(list)
    for x in got:
        by_group[x["group"]].append(x["body"])
        assert x["color"] == "blue"
    assert by_group == {"g1": [f"g1-{i}" for i in range(5)], "g2": [f"g2-{i}" for i in range(5)]}
    # the poison message failed twice, then went to the FIFO dead-letter queue
    dead = until(lambda: "bad" in (d := ok(platform, "dlq", "list", "orders-dlq.fifo")) and d)
    assert dead.count("bad") == 1


def test_stream_records_reach_a_powertools_handler_per_key_in_order(platform: Platform) -> None:
    out = output_of(platform, "click-reader")
    stdin = "".join(f"user-{i % 4}\tclick-{i}\n" for i in range(20))
    placed = ok(platform, "stream", "put", "clicks", input=stdin).splitlines()
    assert len(placed) == 20 and all(p.startswith("shardId-00000000000") for p in placed)
    got = until(lambda: len(lines(out)) >= 20 and lines(out))
    assert {x["source"] for x in got} == {"aws:kinesis"}
    by_key: dict[str, list[int]] = defaultdict(list)
    shards: dict[str, set[str]] = defaultdict(set)
    for x in got:
        by_key[x["key"]].append(int(x["data"].split("-")[1]))
        shards[x["key"]].add(x["shard"])
    assert by_key == {f"user-{k}": list(range(k, 20, 4)) for k in range(4)}
    assert all(len(s) == 1 for s in shards.values())  # a key stays on its shard
    read = ok(platform, "stream", "read", "clicks", "--limit", "100")
    assert len(read.splitlines()) == 20 and "click-0" in read  # read, not consumed
    status = until(
        lambda: (
            (s := json.loads(ok(platform, "get", "ks", "clicks", "-o", "json"))["status"]).get(
                "records"
            )
            == 20
            and s
        )
    )
    assert [sh["shardId"] for sh in status["shards"]] == [
        "shardId-000000000000",
        "shardId-000000000001",
    ]
    one = ok(platform, "stream", "put", "clicks", "late", "--partition-key", "user-1")
    assert one.startswith("shardId-")
    bad = platform.cli("stream", "put", "clicks", input="no tab here\n")
    assert bad.returncode == 2 and "KEY<TAB>DATA" in bad.stderr


def test_a_powertools_batch_processor_reports_a_failed_record_and_it_comes_back(
    platform: Platform,
) -> None:
    """BatchProcessor(KinesisDataStreams) answers batchItemFailures with the failed record's
    sequence number: the shard checkpoints before it and retries from it, nothing skipped."""
    out = output_of(platform, "tally-reader")
    data = [f"r{i}" for i in range(4)] + ["poison"] + [f"r{i}" for i in range(4, 8)]
    ok(platform, "stream", "put", "tallies", *data, "--partition-key", "k")
    got = until(lambda: sum(1 for x in lines(out) if x["data"] == "poison") == 2 and lines(out))
    until(lambda: {x["data"] for x in lines(out)} >= set(data))
    seen = [x["data"] for x in lines(out)]
    first = seen.index("poison")
    assert seen[: first + 1] == data[:5]  # in order up to the failed record
    again = seen.index("poison", first + 1)
    assert seen[again:] == data[4:]  # retried from it: it and the records after it
    assert "r0" not in seen[first + 1 :]  # the records before it were checkpointed
    assert len({x["seq"] for x in got if x["data"] == "poison"}) == 1  # the same record


def test_a_schedule_fires_the_function_with_a_scheduled_event(platform: Platform) -> None:
    out = output_of(platform, "ticker")
    created = ok(
        platform,
        "schedule",
        "create",
        "tick",
        "--expression",
        "rate(1 hour)",
        "--function",
        "ticker",
    )
    assert created == "schedule/tick created\n"
    (event,) = until(lambda: lines(out))  # a rate schedule fires when it is created
    assert (event["type"], event["source"]) == ("Scheduled Event", "aws.events")
    assert event["resources"][0].endswith(":schedule/default/tick")
    table = ok(platform, "get", "ksch")
    assert "rate(1 hour)" in table and "ticker" in table and "ENABLED" in table
    status = json.loads(ok(platform, "schedule", "get", "tick", "-o", "json"))["status"]
    assert status["nextFiring"].endswith("Z") and status["conditions"][0]["reason"] == "Scheduled"
    until(
        lambda: (
            json.loads(ok(platform, "schedule", "get", "tick", "-o", "json"))["status"].get(
                "lastFiring"
            )
            == event["time"]
        )
    )
    ok(
        platform,
        "schedule",
        "create",
        "tick",
        "--expression",
        "rate(1 hour)",
        "--function",
        "ticker",
        "--disabled",
    )
    until(lambda: "Disabled" in ok(platform, "schedule", "describe", "tick"))
    bad = platform.cli(
        "schedule", "create", "t2", "--expression", "cron(0 12 * * * *)", "--function", "ticker"
    )
    assert bad.returncode == 1 and "day-of-month and day-of-week cannot both be set" in bad.stderr
    assert ok(platform, "schedule", "delete", "tick") == 'schedule "tick" deleted\n'
    assert len(lines(out)) == 1
