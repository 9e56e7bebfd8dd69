"""Bounded fuzzing of the Runtime API, as a function's own code (or a neighbour that found the
address) could call it: any method, path, headers and body get an answer in the Runtime API's
shape (``errorType``/``errorMessage``) or its documented success, never an unshaped 500 or a
crash, and the environment still serves its next invocation. A real shim, real HTTP."""

from __future__ import annotations

import json
import os
from pathlib import Path

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import running_shim, shim_config

APP = """
import os
def handler(event, context):
    return {"api": os.environ["AWS_LAMBDA_RUNTIME_API"], "ok": True}
"""
PREFIX = "/2018-06-01/runtime"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))

request_ids = st.one_of(st.just("unknown"), st.text(min_size=1, max_size=20))
paths = st.one_of(
    request_ids.map(lambda rid: f"{PREFIX}/invocation/{rid}/response"),
    request_ids.map(lambda rid: f"{PREFIX}/invocation/{rid}/error"),
    st.just(f"{PREFIX}/init/error"),
    st.just(f"{PREFIX}/invocation/next"),
    st.text(max_size=30).map(lambda tail: f"{PREFIX}/{tail}"),
)
headers = st.dictionaries(
    st.sampled_from(
        ["Lambda-Runtime-Function-Error-Type", "Content-Type", "X-Amz-Anything", "Content-Encoding"]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    max_size=3,
)


async def test_any_request_gets_a_shaped_answer_and_the_environment_lives_on(
    tmp_path: Path,
) -> None:
    config = shim_config(tmp_path, {"app.py": APP})
    async with running_shim(config, tmp_path) as shim:
        api = json.loads((await shim.invoke()).payload)["api"]
        seen: list[str] = []
        async with aiohttp.ClientSession() as http:

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=os.environ.get("FUZZ_RANDOM") is None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(
                method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
                path=paths,
                headers=headers,
                body=st.binary(max_size=300),
            )
            def fuzz(method: str, path: str, headers: dict[str, str], body: bytes) -> None:
                seen.append(f"{method} {path}")
                requests.append((method, path, headers, body))

            requests: list[tuple[str, str, dict[str, str], bytes]] = []
            fuzz()
            for method, path, hdrs, body in requests:
                timeout = aiohttp.ClientTimeout(total=2)
                try:
                    async with http.request(
                        method, f"http://{api}{path}", headers=hdrs, data=body, timeout=timeout
                    ) as r:
                        text = await r.text(errors="replace")
                except TimeoutError:
                    assert path.endswith("/invocation/next"), f"{method} {path} hung"
                    continue
                except (aiohttp.InvalidURL, ValueError):
                    continue  # a URL aiohttp itself refuses to send (the server never saw it)
                if r.status >= 500:
                    doc = json.loads(text)
                    assert {"errorType", "errorMessage"} <= doc.keys(), (method, path, text)
                assert "Traceback" not in text
        assert len(seen) >= min(EXAMPLES, 50)
        after = json.loads((await shim.invoke()).payload)
        assert after["ok"] is True  # the environment (or a fresh one) still serves
