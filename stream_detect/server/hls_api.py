"""``GET /streams/{id}/hls/index.m3u8`` and its segments: a re-streamed stream's HLS.

The playlist and its MPEG-TS segments are held in memory by the stream's
segmenter (:mod:`stream_detect.restream.hls`); these routes only read them.
They are guarded like every endpoint (the token middleware); since players
fetch segments by the URLs the playlist names, and cannot be told to add a
header, the playlist's segment URLs carry the token the playlist was asked
with (``?token=...``) when tokens are configured.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..ports import HlsPlaylists
from .auth import TokenCheck, presented_token

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
SEGMENT = re.compile(r"segment-([0-9]{1,12})\.ts")


def _not_found(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=404)


def install_hls_api(app: FastAPI, playlists: HlsPlaylists, auth: TokenCheck) -> None:
    """Adds the HLS routes over the streams' segmenters."""

    @app.get("/streams/{stream_id}/hls/index.m3u8", tags=["streams"], response_model=None)
    def playlist(stream_id: str, request: Request) -> Response:
        """The stream's live HLS playlist (H.264 in MPEG-TS, 1-2 s segments); 404 when the stream has no
        ``restream: {hls: true}``, 503 until its first segment is complete."""
        hls = playlists.hls(stream_id)
        if hls is None:
            return _not_found(f"stream {stream_id[:100]!r} has no HLS (set restream: {{hls: true}} on it)")
        query = ""
        if auth.enabled:
            headers = {key.lower(): value for key, value in request.headers.items()}
            token = presented_token(headers, dict(parse_qsl(request.url.query)))
            query = urlencode({"token": token}) if token else ""
        text = hls.playlist(query)
        if text is None:
            return JSONResponse({"error": "no segment yet: the stream's first segment is being written"},
                                status_code=503, headers={"Retry-After": "1"})
        return Response(text, media_type=PLAYLIST_TYPE, headers={"Cache-Control": "no-cache"})

    @app.get("/streams/{stream_id}/hls/{name}", tags=["streams"], response_model=None)
    def segment(stream_id: str, name: str) -> Response:
        """One segment the playlist lists (404 once it has left the playlist's window)."""
        hls = playlists.hls(stream_id)
        match = SEGMENT.fullmatch(name)
        if hls is None or match is None:
            return _not_found(f"no HLS segment {name[:100]!r} of stream {stream_id[:100]!r}")
        data = hls.segment(int(match.group(1)))
        if data is None:
            return _not_found(f"segment {name[:100]!r} is not in the playlist (any more)")
        return Response(data, media_type=SEGMENT_TYPE, headers={"Cache-Control": "max-age=60"})
