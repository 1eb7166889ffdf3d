#!/usr/bin/python3
"""An RTSP camera for tests: GStreamer's gst-rtsp-server serving an H.264 test pattern.

Run it with the *system* python3 (Debian's ``python3-gi`` and
``gir1.2-gst-rtsp-server-1.0``); the project's venv cannot import ``gi``::

    /usr/bin/python3 scripts/rtsp_server.py --port 8554 --path /cam \\
        --width 640 --height 360 --fps 15 [--user U --password P]

It listens on 127.0.0.1 only. Once the socket listens it prints one line,
``READY rtsp://127.0.0.1:PORT/path`` (never the credentials), and flushes it.
``--port 0`` picks a free port; the READY line names the one bound. SIGTERM
and SIGINT end it cleanly (exit code 0); a failure to bind exits with code 2
and one line on stderr.

The listening socket is bound with SO_REUSEADDR (gst-rtsp-server asks GLib
for it), so a server killed with SIGKILL can be started again on the same
port at once, even while its old connections sit in TIME_WAIT. The media
factory is shared: every client sees the same live stream.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

HOST = "127.0.0.1"
ROLE = "viewer"
EXIT_BIND_FAILED = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--user`` and ``--password`` come together or not at all."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--path", default="/cam", help="mount point, e.g. /cam")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=15, help="frame rate; also the key-frame interval")
    parser.add_argument("--user", help="require RTSP basic auth with this user name")
    parser.add_argument("--password", help="password for --user")
    args = parser.parse_args(argv)
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a TCP port")
    if min(args.width, args.height, args.fps) <= 0:
        parser.error("--width, --height and --fps must be positive")
    if not args.path.startswith("/"):
        args.path = "/" + args.path
    return args


def launch_line(width: int, height: int, fps: int) -> str:
    """The gst-launch description of the served media: a live test pattern in H.264, one key frame a second.

    ``format=I420`` keeps x264enc from choosing 4:4:4 (High 4:4:4 profile),
    which real cameras never send.
    """
    return (
        f"( videotestsrc is-live=true pattern=smpte"
        f" ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
        f" ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps}"
        f" ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def require_basic_auth(server: GstRtspServer.RTSPServer, factory: GstRtspServer.RTSPMediaFactory,
                       user: str, password: str) -> None:
    """Lets only ``user``/``password`` (HTTP basic) access and construct ``factory``'s media.

    No default token is set: a client without credentials gets no role, hence
    401 with a ``WWW-Authenticate`` challenge, which is what FFmpeg waits for
    before it sends credentials. Giving the default token the viewer role
    would let everyone in.
    """
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)

    permissions = GstRtspServer.RTSPPermissions()
    # Debian 12's bindings lack add_role_empty(); a structure names the role and its grants.
    permissions.add_role_from_structure(Gst.Structure.new_from_string(
        f"{ROLE}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
    factory.set_permissions(permissions)


def build_server(args: argparse.Namespace) -> GstRtspServer.RTSPServer:
    """An RTSP server on 127.0.0.1:``args.port`` with one shared mount at ``args.path``; not yet listening."""
    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.width, args.height, args.fps))
    factory.set_shared(True)
    if args.user is not None:
        require_basic_auth(server, factory, args.user, args.password)
    server.get_mount_points().add_factory(args.path, factory)
    return server


def main(argv: list[str] | None = None) -> int:
    """Serves until SIGTERM or SIGINT; returns the process exit code."""
    args = parse_args(argv)
    Gst.init(None)
    server = build_server(args)
    try:
        # create_source() binds and listens now and raises on failure, unlike
        # attach(), which only logs a warning and returns 0.
        source = server.create_source(None)
    except GLib.Error as error:
        print(f"rtsp_server: cannot listen on {HOST}:{args.port}: {error.message}", file=sys.stderr, flush=True)
        return EXIT_BIND_FAILED
    source.attach(None)

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, _quit, loop)
    print(f"READY rtsp://{HOST}:{server.get_bound_port()}{args.path}", flush=True)
    try:
        loop.run()
    finally:
        source.destroy()
        # Close client sessions so their media pipelines go to NULL before the interpreter exits.
        server.client_filter(lambda _server, _client: GstRtspServer.RTSPFilterResult.REMOVE)
    return 0


def _quit(loop: GLib.MainLoop) -> bool:
    """GLib signal callback: ends the main loop and removes itself."""
    loop.quit()
    return GLib.SOURCE_REMOVE


if __name__ == "__main__":
    sys.exit(main())
