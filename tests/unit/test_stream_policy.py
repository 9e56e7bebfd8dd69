"""Lambda's rules for a Kinesis event source mapping's batches, as tables: record age, retries
(-1, 0, N), bisection down to a poison record, ReportBatchItemFailures, throttles that do not
count, parallelization lanes, the shard checkpoint, tumbling-window responses."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klambda.gateway.stream_policy import (
    BACKOFF_CAP,
    FUNCTION_ERROR_DELAY,
    STATE_LIMIT,
    Batch,
    Checkpoint,
    Condition,
    Decision,
    Entry,
    Fail,
    InvalidResponse,
    Result,
    Retry,
    Split,
    StreamSettings,
    after_invoke,
    backoff,
    before_invoke,
    lane_for,
    parse_item_failures,
    plan_lanes,
    shard_checkpoint,
    state_too_large,
    window_batch,
    window_response,
)
from klambda.gateway.stream_records import sequence_number

S = [sequence_number(f"{1_000_000 + i}-0") for i in range(10)]
E = tuple(Entry(S[i], 1000.0 + i, f"key-{i}") for i in range(10))
FOUR = Batch(E[:4])
DEFAULT = StreamSettings()
RBIF = StreamSettings(report_batch_item_failures=True)
BISECT = StreamSettings(bisect_batch_on_function_error=True)
BOTH = StreamSettings(report_batch_item_failures=True, bisect_batch_on_function_error=True)
WINDOW = StreamSettings(tumbling_window_in_seconds=60)
ERR, OK = Result.FUNCTION_ERROR, Result.SUCCESS


def failures(*identifiers: object) -> bytes:
    return json.dumps({"batchItemFailures": [{"itemIdentifier": i} for i in identifiers]}).encode()


def batch(lo: int, hi: int, retries: int = 0, invocations: int = 0) -> Batch:
    return Batch(E[lo:hi], retries=retries, invocations=invocations)


@pytest.mark.parametrize(
    ("kwargs", "ok"),
    [
        ({}, True),
        ({"maximum_retry_attempts": -1}, True),
        ({"maximum_retry_attempts": 0}, True),
        ({"maximum_retry_attempts": 10000}, True),
        ({"maximum_retry_attempts": -2}, False),
        ({"maximum_retry_attempts": 10001}, False),
        ({"maximum_record_age_in_seconds": -1}, True),
        ({"maximum_record_age_in_seconds": 60}, True),
        ({"maximum_record_age_in_seconds": 604800}, True),
        ({"maximum_record_age_in_seconds": 0}, False),
        ({"maximum_record_age_in_seconds": 59}, False),
        ({"maximum_record_age_in_seconds": 604801}, False),
        ({"tumbling_window_in_seconds": 900}, True),
        ({"tumbling_window_in_seconds": 901}, False),
        ({"parallelization_factor": 10}, True),
        ({"parallelization_factor": 0}, False),
        ({"parallelization_factor": 11}, False),
        ({"batch_size": 10000}, True),
        ({"batch_size": 0}, False),
    ],
)
def test_settings_take_lambda_s_ranges(kwargs: dict[str, int], ok: bool) -> None:
    if ok:
        StreamSettings(**kwargs)
    else:
        with pytest.raises(ValueError):
            StreamSettings(**kwargs)


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError):
        Batch(())


@pytest.mark.parametrize(
    ("settings", "now", "expected"),
    [
        (DEFAULT, 10**9, None),  # -1: no age limit, however old
        (StreamSettings(maximum_record_age_in_seconds=60), 1060.0, None),  # exactly 60 s: kept
        (
            StreamSettings(maximum_record_age_in_seconds=60),
            1060.5,
            Fail(batch(0, 1), Condition.RECORD_AGE_EXCEEDED, then=batch(1, 4)),
        ),
        (
            StreamSettings(maximum_record_age_in_seconds=60),
            1061.5,
            Fail(batch(0, 2), Condition.RECORD_AGE_EXCEEDED, then=batch(2, 4)),
        ),
        (
            StreamSettings(maximum_record_age_in_seconds=60),
            1063.5,
            Fail(batch(0, 4), Condition.RECORD_AGE_EXCEEDED, then=None),
        ),
    ],
)
def test_before_invoke_fails_the_records_too_old_to_deliver(
    settings: StreamSettings, now: float, expected: Fail | None
) -> None:
    assert before_invoke(FOUR, settings, now) == expected


def test_before_invoke_keeps_what_the_batch_went_through() -> None:
    tried = Batch(E[:3], retries=2, invocations=5, throttles=1)
    gate = before_invoke(tried, StreamSettings(maximum_record_age_in_seconds=60), 1060.5)
    assert gate == Fail(
        Batch(E[:1], 2, 5, 1), Condition.RECORD_AGE_EXCEEDED, then=Batch(E[1:3], 2, 5, 1)
    )


def test_before_invoke_fails_only_a_prefix() -> None:
    # a later record that looks older (a clock step) is not skipped past a live one
    odd = Batch((E[0], replace(E[1], arrival=900.0), E[2]))
    limit = StreamSettings(maximum_record_age_in_seconds=60)
    assert before_invoke(odd, limit, 1050.0) is None
    assert before_invoke(Batch(odd.entries[1:]), limit, 1050.0) == Fail(
        Batch(odd.entries[1:2]), Condition.RECORD_AGE_EXCEEDED, then=Batch(odd.entries[2:])
    )


@pytest.mark.parametrize(
    ("settings", "tried", "result", "expected"),
    [
        (DEFAULT, FOUR, OK, Checkpoint(after=S[3])),
        # function errors: retried, counting; -1 never runs out
        (DEFAULT, FOUR, ERR, Retry(batch(0, 4, 1, 1), FUNCTION_ERROR_DELAY, counts=True)),
        (DEFAULT, batch(0, 4, 9999, 9999), ERR, Retry(batch(0, 4, 10000, 10000), 1.0, True)),
        # 0 retries: the first failure is the last
        (
            StreamSettings(maximum_retry_attempts=0),
            FOUR,
            ERR,
            Fail(batch(0, 4, 0, 1), Condition.RETRY_ATTEMPTS_EXHAUSTED),
        ),
        # N retries: N+1 invocations
        (
            StreamSettings(maximum_retry_attempts=2),
            batch(0, 4, 1, 2),
            ERR,
            Retry(batch(0, 4, 2, 3), 1.0, True),
        ),
        (
            StreamSettings(maximum_retry_attempts=2),
            batch(0, 4, 2, 3),
            ERR,
            Fail(batch(0, 4, 2, 4), Condition.RETRY_ATTEMPTS_EXHAUSTED),
        ),
        # bisect: halves in order, the first taking the odd record; no retry used
        (BISECT, FOUR, ERR, Split((batch(0, 2, 0, 1), batch(2, 4, 0, 1)))),
        (BISECT, batch(0, 3, 2, 3), ERR, Split((batch(0, 2, 2, 4), batch(2, 3, 2, 4)))),
        (
            replace(BISECT, maximum_retry_attempts=0),
            FOUR,
            ERR,
            Split((batch(0, 2, 0, 1), batch(2, 4, 0, 1))),
        ),
        # a single record cannot be split: its failures count
        (BISECT, batch(0, 1), ERR, Retry(batch(0, 1, 1, 1), 1.0, True)),
        (
            replace(BISECT, maximum_retry_attempts=0),
            batch(0, 1),
            ERR,
            Fail(batch(0, 1, 0, 1), Condition.RETRY_ATTEMPTS_EXHAUSTED),
        ),
    ],
)
def test_after_invoke(
    settings: StreamSettings, tried: Batch, result: Result, expected: Decision
) -> None:
    assert after_invoke(tried, settings, result) == expected


@pytest.mark.parametrize("result", [Result.THROTTLED, Result.PLATFORM_ERROR])
@pytest.mark.parametrize(
    ("throttles", "delay"), [(0, 1.0), (1, 2.0), (2, 4.0), (5, 32.0), (6, 60.0), (500, 60.0)]
)
@pytest.mark.parametrize(
    "settings", [DEFAULT, StreamSettings(maximum_retry_attempts=0), BISECT, BOTH]
)
def test_throttles_and_platform_errors_back_off_and_use_no_retry(
    result: Result, throttles: int, delay: float, settings: StreamSettings
) -> None:
    tried = Batch(E[:4], retries=0, invocations=2, throttles=throttles)
    assert after_invoke(tried, settings, result) == Retry(
        replace(tried, throttles=throttles + 1), delay, counts=False
    )


@pytest.mark.parametrize(("throttles", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0)])
def test_backoff(throttles: int, delay: float) -> None:
    assert backoff(throttles) == delay <= BACKOFF_CAP


def test_an_invocation_that_ran_resets_the_throttle_backoff() -> None:
    tried = Batch(E[:1], throttles=4)
    assert after_invoke(tried, DEFAULT, ERR) == Retry(Batch(E[:1], 1, 1, 0), 1.0, True)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        b"",
        b"  ",
        b"null",
        b"{}",
        b'{"batchItemFailures": []}',
        b'{"batchItemFailures": null}',
        b'{"batchItemFailure": [{"itemIdentifier": "x"}]}',  # misspelt list: read as null
        b'{"state": {"a": 1}}',
    ],
)
def test_report_batch_item_failures_success(payload: bytes | None) -> None:
    assert parse_item_failures(payload, S[:4]) is None
    assert after_invoke(FOUR, RBIF, OK, payload) == Checkpoint(after=S[3])


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'"ok"', "not a JSON object"),
        (b"42", "not a JSON object"),
        (b'{"batchItemFailures": {}}', "not a list"),
        (b'{"batchItemFailures": "x"}', "not a list"),
        (failures(""), "null, empty or not a string"),
        (failures(None), "null, empty or not a string"),
        (failures(int(S[1])), "null, empty or not a string"),
        (b'{"batchItemFailures": [{"sequenceNumber": "1"}]}', "has no itemIdentifier"),
        (json.dumps({"batchItemFailures": [S[1]]}).encode(), "has no itemIdentifier"),
        (failures(S[5]), "not a record of the batch"),
        (failures(S[1], "nope"), "not a record of the batch"),
    ],
)
def test_report_batch_item_failures_that_fail_the_whole_batch(payload: bytes, why: str) -> None:
    with pytest.raises(InvalidResponse, match=why):
        parse_item_failures(payload, S[:4])
    assert after_invoke(FOUR, RBIF, OK, payload) == Retry(batch(0, 4, 1, 1), 1.0, True)
    assert after_invoke(FOUR, BOTH, OK, payload) == Split((batch(0, 2, 0, 1), batch(2, 4, 0, 1)))


@pytest.mark.parametrize(
    ("identifiers", "lowest"),
    [([S[2]], 2), ([S[3], S[1]], 1), ([S[1], S[1]], 1), ([S[3]], 3), ([S[0], S[2]], 0)],
)
def test_the_lowest_reported_sequence_number_is_where_retries_start(
    identifiers: list[str], lowest: int
) -> None:
    assert parse_item_failures(failures(*identifiers), S[:4]) == lowest


@pytest.mark.parametrize(
    ("settings", "payload", "expected"),
    [
        # checkpoint before the lowest reported record, retry from it (counting)
        (RBIF, failures(S[2]), Retry(batch(2, 4, 1, 1), 1.0, True, checkpoint=S[1])),
        (RBIF, failures(S[3], S[1]), Retry(batch(1, 4, 1, 1), 1.0, True, checkpoint=S[0])),
        # the first record reported: nothing went through, the batch failed whole
        (RBIF, failures(S[0]), Retry(batch(0, 4, 1, 1), 1.0, True)),
        (BOTH, failures(S[0]), Split((batch(0, 2, 0, 1), batch(2, 4, 0, 1)))),
        # with bisection, "bisected at the returned sequence number": a split, not counted
        (BOTH, failures(S[2]), Retry(batch(2, 4, 0, 1), 0.0, False, checkpoint=S[1])),
        (BOTH, failures(S[3]), Retry(batch(3, 4, 0, 1), 0.0, False, checkpoint=S[2])),
        # retries used up: the rest is failed (and checkpointed past with the batch)
        (
            replace(RBIF, maximum_retry_attempts=0),
            failures(S[2]),
            Fail(batch(2, 4, 0, 1), Condition.RETRY_ATTEMPTS_EXHAUSTED),
        ),
        # without ReportBatchItemFailures the response is not read
        (DEFAULT, failures(S[2]), Checkpoint(after=S[3])),
        (BISECT, b"not json", Checkpoint(after=S[3])),
    ],
)
def test_partial_batch_responses(
    settings: StreamSettings, payload: bytes, expected: Decision
) -> None:
    assert after_invoke(FOUR, settings, OK, payload) == expected


@pytest.mark.parametrize(
    ("settings", "payload", "expected"),
    [
        (WINDOW, b'{"state": {"k": 1}}', Checkpoint(after=S[3])),
        (WINDOW, b'{"state": {}}', Checkpoint(after=S[3])),
        # no state: a failed invocation
        (WINDOW, b"{}", Retry(batch(0, 4, 1, 1), 1.0, True)),
        (WINDOW, None, Retry(batch(0, 4, 1, 1), 1.0, True)),
        (WINDOW, b'{"state": null}', Retry(batch(0, 4, 1, 1), 1.0, True)),
        (WINDOW, b'{"state": [1]}', Retry(batch(0, 4, 1, 1), 1.0, True)),
        (
            replace(WINDOW, bisect_batch_on_function_error=True),
            b"{}",
            Split((batch(0, 2, 0, 1), batch(2, 4, 0, 1))),
        ),
        # state and partial failures together
        (
            replace(WINDOW, report_batch_item_failures=True),
            json.dumps(
                {"state": {"k": 1}, "batchItemFailures": [{"itemIdentifier": S[1]}]}
            ).encode(),
            Retry(batch(1, 4, 1, 1), 1.0, True, checkpoint=S[0]),
        ),
        (
            replace(WINDOW, report_batch_item_failures=True),
            json.dumps({"batchItemFailures": []}).encode(),
            Retry(batch(0, 4, 1, 1), 1.0, True),
        ),
    ],
)
def test_tumbling_window_responses_must_carry_state(
    settings: StreamSettings, payload: bytes | None, expected: Decision
) -> None:
    assert after_invoke(FOUR, settings, OK, payload) == expected


@pytest.mark.parametrize(
    ("payload", "state", "items"),
    [
        (b'{"state": {"1": 282, "2": 715}, "batchItemFailures": []}', {"1": 282, "2": 715}, []),
        (b'{"state": {}}', {}, []),
        (
            b'{"state": {}, "batchItemFailures": [{"itemIdentifier": "9"}]}',
            {},
            [{"itemIdentifier": "9"}],
        ),
        (b'{"batchItemFailures": []}', None, []),
        (b'{"state": "x"}', None, []),
        (b'{"state": {}, "batchItemFailures": "x"}', {}, []),
        (b"[]", None, []),
        (b"nope", None, []),
        (b"", None, []),
        (None, None, []),
    ],
)
def test_window_response(
    payload: bytes | None, state: dict[str, object] | None, items: list[object]
) -> None:
    assert window_response(payload) == (state, items)


@pytest.mark.parametrize(("extra", "large"), [(0, False), (1, True), (-100, False)])
def test_a_state_past_1_mb_ends_the_window_early(extra: int, large: bool) -> None:
    state = {"a": "x" * (STATE_LIMIT - len('{"a":""}') + extra)}
    assert state_too_large(state) is large


def test_state_size_is_counted_in_utf8_bytes() -> None:
    assert state_too_large({"a": "é" * (STATE_LIMIT // 2)})
    assert not state_too_large({"a": "x" * (STATE_LIMIT // 2)})


def drive(
    entries: tuple[Entry, ...],
    settings: StreamSettings,
    function: Callable[[Batch], tuple[Result, bytes | None]],
    now: float = 0.0,
    tick: float = 0.0,
) -> tuple[list[list[str]], list[str], list[tuple[list[str], Condition, int]]]:
    """A poller over one lane in miniature: invocations, checkpoints and failures, in order."""
    pending = [Batch(entries)]
    invoked: list[list[str]] = []
    checkpoints: list[str] = []
    failed: list[tuple[list[str], Condition, int]] = []
    while pending:
        assert len(invoked) < 200, "the lane never settles"
        current = pending.pop(0)
        step: Decision | None = before_invoke(current, settings, now + tick * len(invoked))
        if step is None:
            invoked.append(current.sequences)
            step = after_invoke(current, settings, *function(current))
        if isinstance(step, Checkpoint):
            checkpoints.append(step.after)
        elif isinstance(step, Retry):
            if step.checkpoint is not None:
                checkpoints.append(step.checkpoint)
            pending.insert(0, step.batch)
        elif isinstance(step, Split):
            pending[0:0] = list(step.halves)
        else:
            failed.append((step.batch.sequences, step.condition, step.batch.invocations))
            checkpoints.append(step.batch.last.sequence)
            if step.then is not None:
                pending.insert(0, step.then)
    return invoked, checkpoints, failed


def poison(index: int) -> Callable[[Batch], tuple[Result, bytes | None]]:
    def function(tried: Batch) -> tuple[Result, bytes | None]:
        return (ERR, None) if S[index] in tried.sequences else (OK, None)

    return function


def test_bisection_isolates_a_poison_record_and_only_it_uses_retries() -> None:
    settings = replace(BISECT, maximum_retry_attempts=2)
    invoked, checkpoints, failed = drive(E[:8], settings, poison(5))
    assert (
        invoked
        == [
            S[0:8],
            S[0:4],
            S[4:8],
            S[4:6],
            S[4:5],
            S[5:6],  # alone: the first try, then two retries
            S[5:6],
            S[5:6],
            S[6:8],
        ]
    )
    assert failed == [([S[5]], Condition.RETRY_ATTEMPTS_EXHAUSTED, 6)]
    assert checkpoints == [S[3], S[4], S[5], S[7]]


@pytest.mark.parametrize(("retries", "runs"), [(0, 1), (1, 2), (3, 4)])
def test_without_bisection_a_poison_record_fails_its_whole_batch(retries: int, runs: int) -> None:
    settings = StreamSettings(maximum_retry_attempts=retries)
    invoked, checkpoints, failed = drive(E[:4], settings, poison(2))
    assert invoked == [S[0:4]] * runs
    assert failed == [(S[0:4], Condition.RETRY_ATTEMPTS_EXHAUSTED, runs)]
    assert checkpoints == [S[3]]


def test_partial_responses_checkpoint_and_retry_from_the_failure() -> None:
    def function(tried: Batch) -> tuple[Result, bytes | None]:
        return OK, failures(*[s for s in tried.sequences if s == S[2]])

    settings = replace(RBIF, maximum_retry_attempts=1)
    invoked, checkpoints, failed = drive(E[:7], settings, function)
    # the second time S[2] is the batch's first record: nothing gained, the batch failed whole
    assert invoked == [S[0:7], S[2:7]]
    assert failed == [(S[2:7], Condition.RETRY_ATTEMPTS_EXHAUSTED, 2)]
    assert checkpoints == [S[1], S[6]]


def test_partial_responses_make_progress_until_a_record_fails_for_good() -> None:
    seen: set[str] = set()

    def function(tried: Batch) -> tuple[Result, bytes | None]:
        bad = [s for s in tried.sequences if s == S[5] or (s == S[2] and s not in seen)]
        seen.update(tried.sequences)
        return OK, failures(*bad[:1])

    settings = replace(RBIF, maximum_retry_attempts=3)
    invoked, checkpoints, failed = drive(E[:7], settings, function)
    assert invoked == [S[0:7], S[2:7], S[5:7], S[5:7]]
    assert failed == [(S[5:7], Condition.RETRY_ATTEMPTS_EXHAUSTED, 4)]
    assert checkpoints == [S[1], S[4], S[6]]


def test_records_that_age_out_while_retried_are_failed_and_passed() -> None:
    settings = StreamSettings(maximum_record_age_in_seconds=60)
    invoked, checkpoints, failed = drive(E[:3], settings, poison(1), now=1000.0, tick=30.0)
    # at 1060 the first record is exactly 60 s old, still deliverable; at 1090 none is
    assert invoked == [S[0:3]] * 3
    assert failed == [(S[0:3], Condition.RECORD_AGE_EXCEEDED, 3)]
    assert checkpoints == [S[2]]


def test_only_the_records_too_old_are_passed_the_rest_is_delivered() -> None:
    settings = StreamSettings(maximum_record_age_in_seconds=60)
    invoked, checkpoints, failed = drive(E[:3], settings, poison(9), now=1061.5)
    assert failed == [(S[0:2], Condition.RECORD_AGE_EXCEEDED, 0)]
    assert invoked == [S[2:3]]
    assert checkpoints == [S[1], S[2]]


@pytest.mark.parametrize("factor", [1, 2, 3, 10])
@pytest.mark.parametrize("key", ["a", "abc", "message digest", "user-42", "日本語"])
def test_lane_is_the_md5_hash_key_modulo_the_factor(key: str, factor: int) -> None:
    expected = int.from_bytes(hashlib.md5(key.encode()).digest(), "big") % factor
    assert lane_for(key, factor) == expected


@pytest.mark.parametrize(("key", "factor", "lane"), [("a", 2, 1), ("abc", 2, 0), ("abc", 3, 1)])
def test_lanes_of_known_keys(key: str, factor: int, lane: int) -> None:
    # 0x...772661 is odd, 0x...e17f72 even; 0x900150983cd24fb0d6963f7d28e17f72 % 3 == 1
    assert lane_for(key, factor) == lane


def test_lanes_are_the_same_in_another_process() -> None:
    keys = [f"key-{i}" for i in range(50)]
    code = (
        "from klambda.gateway.stream_policy import lane_for\n"
        f"print([lane_for(k, 7) for k in {keys!r}])\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert other.stdout.strip() == str([lane_for(k, 7) for k in keys])


@pytest.mark.parametrize("factor", [0, 11])
def test_factors_outside_1_to_10_are_refused(factor: int) -> None:
    with pytest.raises(ValueError):
        lane_for("k", factor)
    with pytest.raises(ValueError):
        plan_lanes(E[:2], factor, 10)


RUN = [
    replace(e, partition_key=k)
    for e, k in zip(E, ["a", "abc", "a", "a", "abc", "abc"], strict=False)
]
# "a" goes to lane 1 of 2 and "abc" to lane 0 (see test_lanes_of_known_keys)


@pytest.mark.parametrize(
    ("factor", "batch_size", "expected"),
    [
        (1, 10, [[0, 1, 2, 3, 4, 5]]),
        (1, 4, [[0, 1, 2, 3]]),
        (2, 10, [[1, 4, 5], [0, 2, 3]]),
        (2, 2, [[1, 4], [0, 2]]),
        (2, 1, [[1], [0]]),
    ],
)
def test_plan_lanes(factor: int, batch_size: int, expected: list[list[int]]) -> None:
    assert plan_lanes(RUN, factor, batch_size) == [[RUN[i] for i in lane] for lane in expected]


def test_plan_lanes_of_nothing() -> None:
    assert plan_lanes([], 3, 10) == [[], [], []]


keys = st.sampled_from([f"k{i}" for i in range(12)])


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(keys, max_size=60), st.integers(1, 10), st.integers(1, 8))
def test_lanes_keep_each_key_in_one_lane_and_in_order(
    run_keys: list[str], factor: int, batch_size: int
) -> None:
    run = [Entry(sequence_number(f"{i + 1}-0"), float(i), k) for i, k in enumerate(run_keys)]
    planned = plan_lanes(run, factor, batch_size)
    assert len(planned) == factor
    position = {entry.sequence: i for i, entry in enumerate(run)}
    for index, lane in enumerate(planned):
        assert len(lane) <= batch_size
        assert [position[e.sequence] for e in lane] == sorted(position[e.sequence] for e in lane)
        assert all(lane_for(e.partition_key, factor) == index for e in lane)
        # nothing of the lane is skipped: the lane's batch is its first records in the run
        mine = [e for e in run if lane_for(e.partition_key, factor) == index]
        assert lane == mine[:batch_size]


@pytest.mark.parametrize(
    ("done", "checkpoint"),
    [
        (set(), None),
        ({S[1], S[2]}, None),  # the first record is still running
        ({S[0]}, S[0]),
        ({S[0], S[1], S[3]}, S[1]),  # S[2] still running in its lane
        (set(S[:4]), S[3]),
        (set(S), S[3]),
    ],
)
def test_the_shard_checkpoint_is_the_end_of_the_settled_run(
    done: set[str], checkpoint: str | None
) -> None:
    assert shard_checkpoint(E[:4], done) == checkpoint


@pytest.mark.parametrize(
    ("arrivals", "seconds", "count"),
    [
        ([], 60, 0),
        ([0.0, 10.0, 59.9], 60, 3),
        ([0.0, 59.999, 60.0, 61.0], 60, 2),  # 60.0 opens the next window
        ([59.0, 61.0], 60, 1),
        ([125.0, 130.0, 179.0, 181.0], 60, 3),
        ([5.0, 6.0], 1, 1),
    ],
)
def test_a_window_s_batch_stays_in_its_window(
    arrivals: list[float], seconds: int, count: int
) -> None:
    run = [Entry(S[i], a) for i, a in enumerate(arrivals)]
    assert window_batch(run, seconds) == run[:count]
