"""An RTSP server that receives pushes, for tests: ``ffmpeg -rtsp_flags listen``, restartable on its port.

FFmpeg's listen mode takes one publisher (ANNOUNCE/RECORD, over TCP) and
copies what it receives into a file; it ends when the publisher leaves.
Each :meth:`RtspReceiver.start` writes a new file (``received-N.ts``).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg (Debian's) is not installed")


def free_port() -> int:
    """A port nobody listens on now (ffmpeg's listen mode cannot bind port 0 and report it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RtspReceiver:
    """``rtsp://127.0.0.1:PORT/PATH`` taking one push at a time into files under ``directory``."""

    def __init__(self, directory: Path, path: str = "/annotated", listen_timeout_s: int = 60) -> None:
        self.directory = directory
        self.port = free_port()
        self.path = path
        self.listen_timeout_s = listen_timeout_s
        self.files: list[Path] = []
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self) -> Path:
        """Listens (waiting until the port is open); returns the file this run writes."""
        assert FFMPEG is not None
        output = self.directory / f"received-{len(self.files)}.ts"
        self.files.append(output)
        self._process = subprocess.Popen(
            [FFMPEG, "-nostdin", "-v", "error", "-y", "-rtsp_flags", "listen", "-timeout", str(self.listen_timeout_s),
             "-i", self.url, "-c", "copy", "-flush_packets", "1", "-f", "mpegts", str(output)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._process.poll() is None and not self.listening():
            time.sleep(0.05)
        assert self.listening(), f"ffmpeg does not listen on port {self.port}"
        return output

    def listening(self) -> bool:
        """Whether the port is in LISTEN state (read from the kernel: a probe connection would be taken
        for the one session ffmpeg serves)."""
        wanted = f":{self.port:04X}"
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(wanted) and fields[3] == "0A":
                return True
        return False

    def pause(self) -> None:
        """A server that stays connected and reads nothing: SIGSTOP (``kill`` ends it still)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        """A crash: SIGKILL, then reap."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        if self._process is not None:
            self._process.wait(10)

    def __enter__(self) -> RtspReceiver:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.kill()
