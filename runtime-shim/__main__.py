"""Entry point: ``python -m klambda.shim (CONFIG.json | --config-env NAME) [--ready-fd N]``.

Settings come from a JSON file (klambda up) or a variable holding the JSON (a pod: the
Deployment's template carries them); the variable is removed before anything else runs.

Starts the Runtime API and the gRPC server, reports readiness (the bound port, or why the
runtime cannot run) as one JSON line on the ready fd, and on SIGTERM stops taking invocations,
drains in-flight ones within the grace period, then stops every environment it started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="klambda-shim")
    parser.add_argument("config", nargs="?", help="path of the shim's JSON settings")
    parser.add_argument("--config-env", help="a variable holding the settings' JSON instead")
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)
    if (args.config is None) == (args.config_env is None):
        parser.error("give the settings' path or --config-env, not both")
    text = os.environ.pop(args.config_env, None) if args.config_env else None
    if args.config_env and text is None:
        parser.error(f"--config-env: ${args.config_env} is not set")
    # gRPC's fork mode is set by klambda.protos, which this package imports first
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from klambda.api.shim_config import ShimConfig
    from klambda.shim.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s shim %(levelname)s %(message)s")
    config = ShimConfig.from_json(text) if text is not None else ShimConfig.load(args.config)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux dependency
        return asyncio.run(serve(config, args.ready_fd))
    return uvloop.run(serve(config, args.ready_fd))


if __name__ == "__main__":
    sys.exit(main())
