"""``GET /cluster`` and ``POST /cluster/rebalance``: a cluster run's nodes, replicas and cameras."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI

from ..ports import ClusterView


def install_cluster_api(app: FastAPI, cluster: ClusterView) -> None:
    """Adds the cluster routes (only on ``stream-detect run --cluster``)."""

    @app.get("/cluster", tags=["cluster"])
    async def describe() -> dict[str, Any]:
        """The nodes: each one's address, whether it is alive, its CPUs and GPUs, its cameras and the
        detector replicas on it (batches, frames, mean batch); cameras still waiting for a node."""
        return await asyncio.to_thread(cluster.describe)

    @app.post("/cluster/rebalance", tags=["cluster"])
    async def rebalance() -> dict[str, Any]:
        """Spreads the cameras over the nodes that run cameras now (a node that joined takes its share):
        no two nodes differ by more than one camera afterwards. Says which cameras moved where."""
        moved = await asyncio.to_thread(cluster.rebalance)
        return {"moved": moved}
