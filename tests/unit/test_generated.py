"""Generated code is reproducible: the committed gRPC modules match protos/*.proto."""

from __future__ import annotations

from pathlib import Path

from klambda.protos.generate import generate


def test_protos_are_up_to_date(repo_root: Path, tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert written, "no .proto files found"
    for path in written:
        committed = repo_root / "protos" / path.name
        assert committed.read_text() == path.read_text(), (
            f"protos/{path.name} is stale: run python -m klambda.protos.generate"
        )
