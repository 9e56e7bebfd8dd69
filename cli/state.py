"""Where a running local platform can be found: ``<data-dir>/run/platform.json``.

``klambda up`` writes it (mode 0600: it holds the admin token and an access key) and removes it
on exit; every other command reads it. A file whose pid is not alive is a leftover of a crash.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

DATA_DIR_ENV = "KLAMBDA_DATA_DIR"
ROOT_DATA_DIR = "/var/lib/klambda"


class NotRunning(Exception):
    """No local platform runs for this data dir."""


def default_data_dir() -> Path:
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    if cache is None and os.geteuid() == 0:  # root's home is closed to the functions' users
        return Path(ROOT_DATA_DIR)
    return Path(cache or Path.home() / ".cache") / "klambda"


@dataclass(frozen=True)
class PlatformState:
    pid: int
    data_dir: str
    gateway_url: str
    admin_url: str
    admin_token: str
    redis_url: str
    region: str
    access_key_id: str
    secret_access_key: str

    @staticmethod
    def path(data_dir: Path) -> Path:
        return data_dir / "run" / "platform.json"

    def write(self) -> None:
        path = self.path(Path(self.data_dir))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=2)
        tmp.replace(path)

    @classmethod
    def find(cls, data_dir: Path) -> PlatformState:
        """The running platform's state, or NotRunning with a message saying what to do."""
        path = cls.path(data_dir)
        try:
            state = cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise NotRunning(
                f"klambda is not running (no platform found in {data_dir}); "
                "start it with `klambda up`"
            ) from None
        except (ValueError, TypeError) as e:
            raise NotRunning(f"{path} is damaged ({e}); restart with `klambda up`") from e
        if not pid_alive(state.pid):
            raise NotRunning(
                f"klambda is not running (process {state.pid} from {path} has exited); "
                "start it with `klambda up`"
            )
        return state

    def remove(self) -> None:
        self.path(Path(self.data_dir)).unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """The process lives and is klambda (after a crash the pid may belong to another program)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # no /proc here: the signal test is all there is
        return True
    return b"klambda" in cmdline
