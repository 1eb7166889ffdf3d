"""A real MQTT broker for tests: Debian's mosquitto, as a plain process on 127.0.0.1 and a free port.

:func:`running_broker` starts it and stops it in ``finally``; :meth:`Broker.kill`
and :meth:`Broker.start` take it away and bring it back on the same port, as
a broker that crashes and restarts does. :func:`subscriber` is a real paho
client that records what it receives, and :class:`Relay` a TCP forwarder
whose connections can be cut while the broker stays up (the network between
a client and its broker going away). :func:`event_message` and
:func:`counts_message` build the notices the sink is given.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str, step_s: float = 0.02) -> None:
    """Polls ``predicate`` until it is true; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(step_s)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    """One mosquitto process (and its successors on the same port)."""

    port: int
    directory: Path
    users: dict[str, str] = field(default_factory=dict)
    tls_port: int | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        """With a TLS listener: the CA that signed the broker's certificate (for 127.0.0.1)."""
        return self.directory / "ca.pem"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _write_config(self) -> Path:
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "user root",
                 f"log_dest file {self.log_path}", "log_type all"]
        if self.users:
            passwords = self.directory / "passwords"
            passwords.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True,
                               capture_output=True, timeout=10)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls_port is not None:
            if not self.ca_file.exists():
                self._make_certificates()
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self.ca_file}",
                      f"certfile {self.directory / 'server.pem'}", f"keyfile {self.directory / 'server.key'}"]
        path = self.directory / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _make_certificates(self) -> None:
        """A throw-away CA and a server certificate for 127.0.0.1 it signed (OpenSSL's command line)."""
        d = self.directory
        (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        for command in (
            f"req -x509 -newkey rsa:2048 -nodes -keyout {d}/ca.key -out {d}/ca.pem -days 2 -subj /CN=test-ca",
            f"req -newkey rsa:2048 -nodes -keyout {d}/server.key -out {d}/server.csr -subj /CN=127.0.0.1",
            f"x509 -req -in {d}/server.csr -CA {d}/ca.pem -CAkey {d}/ca.key -CAcreateserial -out {d}/server.pem "
            f"-days 2 -extfile {d}/san.cnf",
        ):
            subprocess.run(["openssl", *command.split()], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        """Starts mosquitto on :attr:`port` and waits until it accepts connections."""
        assert self.process is None or self.process.poll() is not None, "the broker is already running"
        config = self._write_config()
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        ports = [port for port in (self.port, self.tls_port) if port is not None]
        while not all(_accepts(port) for port in ports):
            if self.process.poll() is not None:
                raise AssertionError(f"mosquitto exited with {self.process.returncode}: {self.log[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"mosquitto did not listen on {ports} in {START_TIMEOUT_S} s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without a word to its clients (its retained messages with it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: the broker hangs, its connections open and silent (a broker stuck on a full disk)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen broker would not act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextmanager
def running_broker(users: dict[str, str] | None = None, tls: bool = False) -> Iterator[Broker]:
    """A mosquitto on 127.0.0.1 and a free port (anonymous, or only ``users`` with their passwords).

    With ``tls`` it also listens with TLS on :attr:`Broker.tls_port`, its certificate signed by
    :attr:`Broker.ca_file`.
    """
    directory = Path(tempfile.mkdtemp(prefix="mosquitto-"))
    broker = Broker(free_port(), directory, dict(users or {}), free_port() if tls else None)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int


class Subscriber:
    """A paho client subscribed to some topics, recording every message it receives."""

    def __init__(self, port: int, topics: list[str], client_id: str, username: str | None = None,
                 password: str | None = None) -> None:
        self.messages: list[Received] = []
        self.connects = 0
        self._lock = threading.Lock()
        self._topics = topics
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object,
                    properties: object) -> None:
        client.subscribe([(topic, 1) for topic in self._topics])
        with self._lock:
            self.connects += 1

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain),
                                          message.qos))

    def received(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def payloads(self, topic: str) -> list[bytes]:
        return [m.payload for m in self.received(topic)]

    def last(self, topic: str) -> bytes | None:
        found = self.payloads(topic)
        return found[-1] if found else None

    def wait_for(self, topic: str, payload: bytes, timeout_s: float = 10.0) -> None:
        """Waits until the latest message on ``topic`` is ``payload``."""
        wait_until(lambda: self.last(topic) == payload, timeout_s,
                   f"{payload[:60]!r} on {topic} (last: {(self.last(topic) or b'')[:60]!r})")


@contextmanager
def subscriber(port: int, *topics: str, client_id: str = "test-subscriber", username: str | None = None,
               password: str | None = None) -> Iterator[Subscriber]:
    """A started :class:`Subscriber`, subscribed (QoS 1) before it is yielded; disconnected in ``finally``."""
    listener = Subscriber(port, list(topics), client_id, username, password)
    listener.client.loop_start()
    try:
        wait_until(lambda: listener.connects > 0, 10.0, "the subscriber to connect")
        # SUBACK is not awaited by paho's on_connect; a round trip through the broker shows it is in place.
        probe = f"test/probe/{client_id}"
        listener.client.subscribe(probe, 1)
        listener.client.publish(probe, b"ready", qos=1)
        wait_until(lambda: listener.received(probe), 10.0, "the subscriber's probe")
        yield listener
    finally:
        listener.client.disconnect()
        listener.client.loop_stop()


class Relay:
    """A TCP forwarder on 127.0.0.1 to a broker, whose connections can be cut and whose port refused.

    Cutting the relay is the network between a client and its broker going
    away while the broker stays up: the broker sees the client's connection
    drop without a DISCONNECT and publishes its will.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(8)
        server.settimeout(0.2)
        self._server = server
        thread = threading.Thread(target=self._accept, args=(server,), name="relay:accept")
        thread.start()
        self._threads.append(thread)

    def cut(self) -> None:
        """Closes every relayed connection and stops accepting new ones."""
        with self._lock:
            server, self._server = self._server, None
            sockets, self._sockets = self._sockets, []
        for sock in [s for s in (server,) if s is not None] + sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)
        self._threads = [t for t in self._threads if t.is_alive()]

    def _accept(self, server: socket.socket) -> None:
        while True:
            with self._lock:
                if self._server is not server:
                    return
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):  # forwarded at once, as a direct connection would be
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(source, target), name="relay:pump")
                thread.start()
                self._threads.append(thread)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        source.settimeout(None)
        with suppress(OSError):
            while chunk := source.recv(65536):
                target.sendall(chunk)
        with suppress(OSError):
            target.shutdown(socket.SHUT_RDWR)


@contextmanager
def relay_to(port: int) -> Iterator[Relay]:
    relay = Relay(port)
    relay.open()
    try:
        yield relay
    finally:
        relay.cut()


@contextmanager
def no_thread_exceptions() -> Iterator[list[str]]:
    """Fails if an exception escapes any thread (paho's network thread included) meanwhile."""
    escaped: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        escaped.append(f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}")
        previous(args)

    threading.excepthook = hook
    try:
        yield escaped
    finally:
        threading.excepthook = previous
    assert not escaped, f"exceptions escaped threads: {escaped}"


# The messages the sink is given: events and counts as the tracker sends them (schema/messages.schema.json).

def event_message(number: int, kind: str, stream: str = "porch", track_id: int = 1, label: str = "person", *,
                  zone: str | None = None, line: str | None = None, direction: str | None = None,
                  at: float = 1_760_000_000.0) -> dict[str, object]:
    return {"type": "event", "version": 1, "id": f"{stream}-{number:06d}", "kind": kind, "stream": stream,
            "at": at + number, "frame": number * 10, "track_id": track_id, "label": label, "score": 0.9,
            "box": {"xmin": 10, "ymin": 20, "xmax": 110, "ymax": 220}, "zone": zone, "line": line,
            "direction": direction,
            "duration_s": 1.5 if kind in ("object.end", "zone.leave", "zone.loiter") else None}


def counts_message(stream: str, zones: dict[str, dict[str, int]],
                   lines: dict[str, dict[str, int]] | None = None) -> dict[str, object]:
    return {"type": "counts", "version": 1, "stream": stream, "at": 1_760_000_000.0, "zones": zones,
            "lines": lines or {}}
