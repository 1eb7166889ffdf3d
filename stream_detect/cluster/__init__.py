"""Cameras and detectors over a Ray cluster (``stream-detect run --cluster ADDRESS``).

Only :mod:`.ray_engine` imports Ray; the rest of this package, and the whole
single-process path, runs without it. The parts:

- :mod:`.settings`: the ``cluster:`` configuration;
- :mod:`.relay`: what crosses the network from a node to the started process
  (results as their JSON, notices, state changes, snapshots), in order, bounded;
- :mod:`.agent`: one per node, an ordinary :class:`~stream_detect.pipeline.Pipeline`
  of that node's cameras (capture, motion gating, tracking, recording) whose
  detector is the model's Serve deployment, replicas on the same node first;
- :mod:`.head`: the started process's side: where each camera runs, the nodes'
  results into its own dispatcher (websocket hub, event history, MQTT,
  webhooks), cameras placed again when their node or agent dies, rebalancing;
  the same ports (:mod:`stream_detect.ports`) the server reads of one process;
- :mod:`.ray_engine`: the engine those run on (Ray actors and Ray Serve).
"""
