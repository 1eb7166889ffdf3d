"""Re-streaming: one H.264 encode per stream, fanned out to its outputs.

The graph of one stream (wired by the pipeline with :func:`.build.build_stream_encoder`)::

    capture thread --frame--> StreamEncoder (thread encode:<id>, drop-oldest queue, counted)
                                  | draws the latest overlay, encodes once (h264.H264Encoder)
                                  v
                              packets --> RtspPush (thread rtsp:<id>: push, reconnect with backoff)
                                      --> HlsSegmenter (MPEG-TS segments in memory, served by
                                          /streams/{id}/hls/index.m3u8)

Every output implements :class:`~.outputs.PacketOutput`; none may block the
encoder's thread, and the encoder never blocks capture or detection.
"""
