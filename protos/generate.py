"""Regenerates the Python code for the .proto files in this folder.

protoc names generated imports after the include path, so the .proto files are staged under
``klambda/protos/`` in a temporary tree: the generated modules then import each other as
``klambda.protos.*`` and work from the installed package.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Writes generated modules for every .proto here into ``out_dir``; returns their paths."""
    from grpc_tools import protoc  # build-time dependency only

    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp, "src", "klambda", "protos")
        staged.mkdir(parents=True)
        protos = sorted(PROTO_DIR.glob("*.proto"))
        for proto in protos:
            shutil.copy(proto, staged / proto.name)
        gen = Path(tmp, "gen")
        gen.mkdir()
        args = [
            "protoc",
            f"-I{Path(tmp, 'src')}",
            f"--python_out={gen}",
            f"--pyi_out={gen}",
            f"--grpc_python_out={gen}",
            *(f"klambda/protos/{p.name}" for p in protos),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        written = []
        for path in sorted(Path(gen, "klambda", "protos").iterdir()):
            if path.name.endswith(GENERATED_SUFFIXES):
                target = out_dir / path.name
                shutil.copy(path, target)
                written.append(target)
        return written


if __name__ == "__main__":
    for p in generate(PROTO_DIR):
        print(p, file=sys.stderr)
