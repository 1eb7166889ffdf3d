"""A sender killed with SIGKILL while its deliveries are pending (the receiver down) loses none of them:
restarted on the same data directory with the receiver up, it delivers each with its original webhook-id.

The sender is a child process running this module: ``python -m tests.notify.test_webhook_restart
DATA_DIR URL COUNT`` queues ``COUNT - 1`` events, lets its worker retry for a second and a half,
queues the last one, printing ``queued ID`` after each ``on_event`` returned, then keeps running
until its standard input closes (then it closes the sink and exits 0) or a minute passes.
"""

from __future__ import annotations

import queue
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stream_detect.notify.webhook_outbox import DeliveryReader, outbox_path
from stream_detect.notify.webhooks import WebhookSink
from stream_detect.sinks import Notice

from ..events.sample import DAY, event
from ..processes import stop_process
from .test_webhook_delivery import SECRET, SHORT, hook
from .webhook_receiver import free_port, receiving, wait_until


class Sender:
    """The child process and the lines it printed, read on a thread so every wait has a bound."""

    def __init__(self, data_dir: Path, url: str, count: int) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "tests.notify.test_webhook_restart", str(data_dir),
                                         url, str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, name="test-sender-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def line(self, timeout_s: float = 15) -> str:
        try:
            return self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"the sender printed nothing for {timeout_s} s") from None


@pytest.mark.timeout(90)
def test_sigkill_with_pending_deliveries_then_restart_delivers_each_with_its_id(tmp_path: Path) -> None:
    count = 10
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    data_dir = tmp_path / "data"
    reader = DeliveryReader(outbox_path(data_dir))

    first = Sender(data_dir, url, count)
    try:
        queued = []
        for _ in range(count):
            line = first.line()
            assert line.startswith("queued "), line
            queued.append(line.split()[1])
        first.process.send_signal(signal.SIGKILL)  # at once after the last on_event returned
        assert first.process.wait(10) == -signal.SIGKILL
    finally:
        stop_process(first.process, signal.SIGKILL)

    before = {d["event_id"]: d for d in reader.deliveries(limit=1000)[0]}
    assert sorted(before) == sorted(queued), "every queued event is in the outbox, the last one too"
    assert all(d["status"] == "pending" for d in before.values())
    assert any(d["attempts"] >= 1 and d["last_status"] is None for d in before.values()), \
        "the killed sender had retried against the down receiver"

    with receiving(SECRET, tmp_path / "received.jsonl", port=port) as receiver:
        second = Sender(data_dir, url, 0)
        try:
            wait_until(lambda: {r["event_id"] for r in receiver.accepted()} == set(queued), 20,
                       "every pending delivery at the receiver after the restart")
            time.sleep(1.0)
            assert second.process.stdin is not None
            second.process.stdin.close()  # a clean stop now
            assert second.process.wait(15) == 0, second.process.stderr.read() if second.process.stderr else ""
        finally:
            stop_process(second.process, signal.SIGKILL)
        requests = receiver.requests()
    assert all(r["verified"] for r in requests)
    received = {r["webhook_id"]: r["event_id"] for r in requests}
    assert sorted(received.values()) == sorted(queued), "each event once in the de-duplicated log"
    assert received == {d["webhook_id"]: event_id for event_id, d in before.items()}, "the original webhook-ids"
    after = reader.deliveries(limit=1000)[0]
    assert {d["status"] for d in after} == {"delivered"} and len(after) == count


def _send(data_dir: Path, url: str, count: int) -> None:
    sink = WebhookSink([hook(url)], data_dir, retry=SHORT)
    for serial in range(count):
        if serial == count - 1:
            time.sleep(1.5)  # the worker retries the first ones meanwhile
        message = event(DAY + serial, "line.cross", event_id=f"restart-{serial:03d}")
        sink.on_event(Notice(message["stream"], message))
        print(f"queued {message['id']}", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sys.stdin], [], [], 0.1)
        if readable and not sys.stdin.readline():
            break
    sink.close()


if __name__ == "__main__":
    _send(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
