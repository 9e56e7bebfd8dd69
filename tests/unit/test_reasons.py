"""The typed Reasons: what an invocation gets while a Reason holds, and whether waiting helps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from klambda.api.reasons import Reason
from klambda.controller.platform import StartFailed


@pytest.mark.parametrize(
    ("reason", "lambda_error", "permanent", "blocks"),
    [
        (Reason.INVALID_RUNTIME, "InvalidRuntimeException", True, True),
        (Reason.CODE_FETCH_FAILED, "ResourceNotReadyException", False, True),
        (Reason.CODE_TOO_LARGE, "ResourceNotReadyException", True, True),
        (Reason.INVALID_SPEC, "ResourceNotReadyException", True, True),
        (Reason.SECRET_NOT_FOUND, "ResourceNotReadyException", False, False),
        (Reason.SHIM_START_FAILED, "ResourceNotReadyException", False, False),
        (Reason.INVALID_HANDLER, "ResourceNotReadyException", True, False),
        (Reason.THROTTLED, "TooManyRequestsException", True, False),
        (Reason.FUNCTION_NOT_FOUND, "ResourceNotFoundException", False, False),
        (Reason.ENVIRONMENT_READY, "ResourceNotReadyException", False, False),
    ],
)
def test_reason_table(reason: Reason, lambda_error: str, permanent: bool, blocks: bool) -> None:
    assert (reason.lambda_error, reason.permanent, reason.blocks_invocations) == (
        lambda_error,
        permanent,
        blocks,
    )


def test_reasons_are_their_wire_strings() -> None:
    assert Reason.INVALID_RUNTIME == "InvalidRuntime"
    assert f"{Reason.POLLING}: x" == "Polling: x"
    assert Reason.of("CodeTooLarge") is Reason.CODE_TOO_LARGE
    assert Reason.of("SomethingNewer") is None  # read back from a newer release's status


def test_start_failed_takes_the_reasons_permanence_unless_told() -> None:
    assert StartFailed(Reason.INVALID_RUNTIME, "m").permanent
    assert not StartFailed(Reason.CODE_FETCH_FAILED, "m").permanent
    assert StartFailed(Reason.CODE_FETCH_FAILED, "gone for good", permanent=True).permanent


def test_every_failure_reason_in_the_docs_is_one_klambda_writes(repo_root: Path) -> None:
    table = (repo_root / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Za-z]+)` \| ", table, re.M))
    documented -= {"Pending", "Active", "Failed"}  # the state column of the table above it
    assert documented and all(Reason.of(r) is not None for r in documented), documented
