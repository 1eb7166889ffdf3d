"""The event history in a running analyzer: opened in the data directory, served, measured, refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..processes import serving_command

FAKE_RUN = "tests.faults.fake_run"  # stream-detect as users run it, with the fake detector


@pytest.mark.timeout(120)
def test_run_keeps_its_history_in_the_data_dir_and_a_second_writer_is_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    with serving_command("run", "--port", "0", "--source", "synthetic",
                         "--data-dir", str(data_dir), module=FAKE_RUN) as served:
        page = httpx.get(f"{served.base}/events", timeout=10)
        assert page.status_code == 200 and page.json() == {"events": [], "next": None}
        assert httpx.get(f"{served.base}/counts", timeout=10).status_code == 200
        metrics = httpx.get(f"{served.base}/metrics", timeout=10).text
        assert "stream_detect_events_written_total 0.0" in metrics
        assert (data_dir / "events.db").is_file()
        second = subprocess.run(
            [sys.executable, "-m", FAKE_RUN, "run", "--port", "0", "--source",
             "synthetic", "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.strip().count("\n") == 0, second.stderr
        assert "events.db" in second.stderr and "open for writing already" in second.stderr
    # Stopped: the lock is gone, the next start opens the same history.
    with serving_command("run", "--port", "0", "--source", "synthetic",
                         "--data-dir", str(data_dir), module=FAKE_RUN) as served:
        assert httpx.get(f"{served.base}/events", timeout=10).status_code == 200


@pytest.mark.timeout(60)
def test_with_the_history_off_its_routes_say_so(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model: {id: fake}\nevents: {enabled: false}\nsources: [{id: cam, kind: synthetic}]\n")
    with serving_command("run", "--port", "0", "--config", str(config), "--data-dir", str(tmp_path),
                         module=FAKE_RUN) as served:
        answer = httpx.get(f"{served.base}/events", timeout=10)
        assert answer.status_code == 404 and "history is off" in answer.json()["error"]
        assert not (tmp_path / "events.db").exists()
