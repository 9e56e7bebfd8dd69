"""TokenReview answers are cached by token digest, boundedly, junk tokens only briefly, and one
token's concurrent requests share one review (against the API double)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from klambda.gateway import kube_iam
from klambda.gateway.kube_iam import SecretDirectory, TokenReviewer
from klambda.kube.client import KubeClient, KubeConfig
from tests.kube.double import KubeApiDouble


def reviews(api: KubeApiDouble) -> int:
    return sum(1 for r in api.requests if r.path.endswith("/tokenreviews"))


async def test_token_reviews_are_bounded_and_shared(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(kube_iam, "TOKEN_CACHE_SIZE", 50)
    async with KubeApiDouble() as api:
        client = KubeClient(KubeConfig.load(str(api.write_kubeconfig(tmp_path / "kubeconfig"))))
        try:
            reviewer = TokenReviewer(client, SecretDirectory(client))
            # one junk token, asked for by 20 requests at once: one review
            answers = await asyncio.gather(*(reviewer.review("junk") for _ in range(20)))
            assert answers == [None] * 20 and reviews(api) == 1
            await reviewer.review("junk")  # a negative answer is cached for a while too
            assert reviews(api) == 1
            # a flood of distinct junk tokens: one review each, the cache stays bounded
            for i in range(200):
                await reviewer.review(f"junk-{i}")
            assert reviews(api) == 201
            assert len(reviewer._cache) == 50
            assert all("junk" not in key for key in reviewer._cache)  # digests, not tokens
        finally:
            await client.close()
