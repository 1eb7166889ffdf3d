"""A Ray cluster of several nodes on this one machine: for the demo, the tests and the scaling benchmark.

Each node is ``ray start`` with its own temporary directory and a custom
resource naming it (``node-0`` is the head). Nothing here imports Ray: the
nodes are the ``ray`` command beside this Python. A node is killed as a
machine would die: its raylet and every process under it, at once (SIGKILL).

Ray listens on every interface and dials the machine's own address even
when given 127.0.0.1; :func:`loopback_only` runs a command in a network
namespace that has only loopback (Linux, as root), which is how the tests
keep their traffic on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Ray's worker processes take ports 10002-19999 by default: the GCS port is outside it.
DEFAULT_PORT = 6390
START_TIMEOUT_S = 120.0


def ray_command() -> str:
    """The ``ray`` command of this Python's environment."""
    beside = Path(sys.executable).with_name("ray")
    if beside.exists():
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise RuntimeError("the 'ray' command is not installed: pip install 'stream-detect[ray]'")
    return found


def loopback_only(argv: list[str]) -> list[str]:
    """``argv`` run in a new network namespace with only loopback up (needs root and ``unshare``)."""
    quoted = " ".join(_quote(arg) for arg in argv)
    return ["unshare", "--net", "--", "sh", "-c", f"ip link set lo up && exec {quoted}"]


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"


@dataclass
class LocalCluster:
    """``nodes`` Ray nodes on this machine, each with ``cpus`` CPUs, under ``directory`` (keep its path short:
    Ray's socket paths under it must fit in 107 bytes)."""

    directory: Path
    nodes: int = 2
    cpus: int = 2
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    started: list[int] = field(default_factory=list)  # node numbers started
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def node_dir(self, number: int) -> Path:
        return self.directory / f"n{number}"

    def start(self) -> None:
        """Starts the head and the other nodes (a few seconds each)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for number in range(self.nodes):
            self.start_node(number)

    def start_node(self, number: int) -> None:
        """Starts node ``number`` (0 is the head), and returns once it has joined."""
        temp = self.node_dir(number)
        temp.mkdir(parents=True, exist_ok=True)
        command = [ray_command(), "start", "--node-ip-address", self.host, "--num-cpus", str(self.cpus),
                   "--temp-dir", str(temp), "--resources", json.dumps({f"node-{number}": 1}), "--disable-usage-stats"]
        if number == 0:
            command += ["--head", "--port", str(self.port), "--include-dashboard=false"]
        else:
            command += ["--address", self.address]
        environment = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **self.environment}
        log = temp / "start.log"
        with log.open("wb") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=environment,
                                  timeout=START_TIMEOUT_S, check=False)
        if done.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"ray start of node {number} failed ({done.returncode}): " + " | ".join(tail))
        self.started.append(number)

    def kill_node(self, number: int) -> int:
        """Kills node ``number`` as a machine dies: its raylet and all under it, SIGKILL. Returns how many."""
        return self._signal(self.node_dir(number), signal.SIGKILL)

    def stop(self) -> None:
        """Stops every node (SIGTERM, then SIGKILL what is left after a few seconds)."""
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
            if not self._signal(self.directory, sig):
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self._processes(self.directory):
                time.sleep(0.2)

    def _signal(self, directory: Path, sig: int) -> int:
        pids = self._processes(directory)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return len(pids)

    @staticmethod
    def _processes(directory: Path) -> list[int]:
        """The processes started with ``directory`` in their command line, and every process under them."""
        marker = str(directory.resolve())
        parents: dict[int, int] = {}
        roots = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            pid = int(entry.name)
            parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
            if marker in command and pid != os.getpid():
                roots.add(pid)
        found = set(roots)
        changed = True
        while changed:
            changed = False
            for pid, parent in parents.items():
                if parent in found and pid not in found:
                    found.add(pid)
                    changed = True
        return sorted(found)
