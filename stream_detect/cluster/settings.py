"""The ``cluster:`` settings: where the cameras and detectors of ``stream-detect run --cluster`` run."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# What Ray takes as an address: HOST:PORT, ray://HOST:PORT (Ray Client) or auto (the cluster this machine is in).
_ADDRESS = re.compile(r"^(auto|(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5})$")


class ClusterConfig(BaseModel):
    """A Ray cluster: a detector deployment per model (Ray Serve) and each camera on one node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["ray"] = Field("ray", description="The distributed engine (Ray is the one there is).")
    address: str = Field("auto", description="HOST:PORT, ray://HOST:PORT or auto (the cluster of this machine).")
    namespace: str = Field("stream-detect", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                           description="Ray namespace of the actors and Serve applications.")
    replicas: int | None = Field(None, ge=1, le=1024,
                                 description="Detector replicas per model (default: one per GPU when "
                                             "replica_gpus is set, else one per node).")
    replica_cpus: float = Field(1.0, ge=0, le=256, description="CPUs one detector replica holds.")
    replica_gpus: float = Field(0.0, ge=0, le=16, description="GPUs one detector replica holds (1: a replica per GPU).")
    max_batch_size: int = Field(8, ge=1, le=256, description="Frames one replica's batch takes at most "
                                                             "(the frames of several cameras share it).")
    batch_wait_ms: float = Field(10.0, ge=0, le=1000, description="How long a replica waits to fill a batch.")
    deploy: bool = Field(True, description="Deploy the detectors (false: deployed by someone else, a KubeRay "
                                           "RayService, and found as stream-detect-<model name>).")
    poll_s: float = Field(0.5, gt=0, le=10, description="Longest wait of one poll of a node for results.")

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        value = value.strip()
        if not _ADDRESS.match(value):
            raise ValueError(f"cluster address {value!r} is not HOST:PORT, ray://HOST:PORT or auto")
        return value
