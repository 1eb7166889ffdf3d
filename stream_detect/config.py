"""Configuration: pydantic models, YAML loading and command-line overrides.

Loaded once at start, validated completely before anything runs, and passed
down; modules never read the environment themselves. A wrong key or value is
a :class:`~stream_detect.errors.ConfigError` whose message is one line naming
it.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from .analytics.settings import AnalyticsFields
from .cluster.settings import ClusterConfig
from .errors import ConfigError
from .motion import MotionConfig
from .notify.mqtt_config import MqttConfig
from .notify.webhook_config import WebhookConfig
from .redact import is_secret_name, redact
from .restream.settings import RestreamConfig

DEFAULT_MODEL = "facebook/detr-resnet-50"
STREAM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # whole id: fullmatch, so no trailing newline
# A configuration is a few KiB: the cap bounds the time and memory the YAML parser can be made to spend.
MAX_CONFIG_BYTES = 1024 * 1024
SHOWN_VALUE_CHARS = 120


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReconnectConfig(_Strict):
    """Capped exponential backoff between attempts to reopen a live source."""

    initial_s: float = Field(0.5, gt=0, le=60, description="First wait after a failure.")
    max_s: float = Field(4.0, gt=0, le=300, description="Ceiling of the wait.")
    multiplier: float = Field(2.0, ge=1, le=10, description="Growth of the wait per failure.")
    max_attempts: int | None = Field(
        None, ge=1, description="Give up (state 'failed') after this many failures in a row."
    )


class RecordConfig(_Strict):
    """Recording annotated video of live streams into crash-safe MP4 segments."""

    dir: str = Field(description="Directory; each stream records into DIR/<stream-id>/.")
    segment_seconds: float = Field(60.0, ge=1, le=86_400, description="Length of one segment file.")
    max_bytes: int | None = Field(None, ge=1, description="Per stream: delete the oldest segments above this size.")
    max_age_hours: float | None = Field(None, gt=0, description="Per stream: delete segments older than this.")
    encoder: Literal["libx264", "h264_nvenc"] = Field(
        "libx264", description="The stream's encoder (one per stream, shared with clips; 'restream' settings win)."
    )
    preset: str = Field("veryfast", pattern=r"^[a-z0-9]+$", description="Encoder speed preset (as 'encoder').")
    queue_size: int = Field(
        16, ge=1, le=1024, description="Frames' packets waiting to be written; more are dropped (counted)."
    )
    retry_s: float = Field(10.0, gt=0, le=3600, description="After a failure (disk full), try again this often.")


class _SourceBase(AnalyticsFields):  # strict like _Strict; adds tracking, zones, lines, masks, filters
    id: str = Field(description="Stream id used in messages, URLs and metrics.")
    queue_size: int = Field(2, ge=1, le=256, description="Frames held between capture and detection.")
    drop_policy: Literal["drop_oldest", "block"] | None = Field(
        None, description="When the queue is full: drop the oldest frame (live) or wait (files)."
    )
    max_fps: float | None = Field(None, gt=0, le=240, description="Skip frames above this rate.")
    record: RecordConfig | Literal[False] | None = Field(
        None, description="Record this stream (overrides the global 'record'); false: never."
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="Minimum score on this stream (default: the model's)."
    )
    model: str | None = Field(
        None, description="The model serving this stream: a name of 'models' (default: the top-level 'model')."
    )
    motion: MotionConfig = Field(
        MotionConfig(), description="Skip the detector on still frames (default: on for live sources)."
    )
    restream: RestreamConfig | None = Field(
        None, description="The annotated video pushed to an RTSP server (rtsp: URL) and served as HLS (hls: true)."
    )

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not STREAM_ID.fullmatch(value):
            raise ValueError("a stream id is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return value


def _check_decoder(value: str | None) -> str | None:
    if value is None:
        return None
    import av

    try:
        av.codec.Codec(value, "r")
    except Exception:
        raise ValueError(f"FFmpeg here has no decoder {value!r}") from None
    return value


Decoder = Annotated[
    str | None,
    Field(description="FFmpeg decoder to use instead of the stream's own, e.g. h264_cuvid (NVDEC)."),
    BeforeValidator(_check_decoder),
]


class UrlSource(_SourceBase):
    """A network stream read with FFmpeg: RTSP, RTMP, HTTP(S), HLS, ..."""

    kind: Literal["url"] = "url"
    url: str
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    open_timeout_s: float = Field(5.0, gt=0, le=120)
    read_timeout_s: float = Field(5.0, gt=0, le=120)
    reconnect: ReconnectConfig = ReconnectConfig()
    decoder: Decoder = None


class FileSource(_SourceBase):
    """A video file, read as fast as the detector takes it, or paced (``realtime``)."""

    kind: Literal["file"] = "file"
    path: str
    realtime: bool = Field(False, description="Pace to the file's frame rate, like a camera.")
    loop: bool = Field(False, description="Start again at the end (implies a live source).")
    decoder: Decoder = None


class LavfiSource(_SourceBase):
    """An FFmpeg lavfi test source, e.g. ``testsrc2=size=1280x720:rate=25``."""

    kind: Literal["lavfi"] = "lavfi"
    graph: str
    realtime: bool = True


class WebcamSource(_SourceBase):
    """A local camera through OpenCV: ``/dev/videoN`` or an index."""

    kind: Literal["webcam"] = "webcam"
    device: str | int = 0
    width: int | None = Field(None, ge=1, le=8192)
    height: int | None = Field(None, ge=1, le=8192)
    fps: float | None = Field(None, gt=0, le=240)
    read_timeout_s: float = Field(3.0, gt=0, le=60)
    reconnect: ReconnectConfig = ReconnectConfig()


class SyntheticSource(_SourceBase):
    """Moving shapes drawn in-process: for tests and the demo."""

    kind: Literal["synthetic"] = "synthetic"
    width: int = Field(640, ge=32, le=4096)
    height: int = Field(360, ge=32, le=4096)
    fps: float = Field(15.0, gt=0, le=240)
    seed: int = 0
    frames: int | None = Field(None, ge=1, description="End after this many frames.")


# The key that tells a source entry's kind when ``kind`` is left out; a ``url`` is then read by its value.
_KIND_OF_KEY = {"url": "url", "path": "file", "graph": "lavfi", "device": "webcam"}
_URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _fields_of_location(location: str) -> dict[str, Any]:
    """The kind and fields a source location stands for: the one rule of ``--source`` and an entry's ``url``.

    ``lavfi:GRAPH`` is an FFmpeg test source, ``synthetic`` the built-in
    camera, a number or ``/dev/videoN`` a webcam, a URL with a scheme other
    than ``file://`` a network stream, anything else a file path.
    """
    if location.startswith("lavfi:"):
        return {"kind": "lavfi", "graph": location.removeprefix("lavfi:")}
    if location == "synthetic" or location.startswith("synthetic:"):
        return {"kind": "synthetic"}
    if location.isascii() and location.isdigit():  # not str.isdigit alone: int() refuses '²'
        return {"kind": "webcam", "device": int(location)}
    if location.startswith("/dev/video"):
        return {"kind": "webcam", "device": location}
    if _URL_SCHEME.match(location) and not location.startswith("file://"):
        return {"kind": "url", "url": location}
    return {"kind": "file", "path": location.removeprefix("file://")}


def source_from_url(url: str, stream_id: str) -> dict[str, Any]:
    """Turns a ``--source`` argument into a source mapping, guessing its kind."""
    return {"id": stream_id, **_fields_of_location(url)}


def _with_guessed_kind(entry: Any) -> Any:
    """A source entry without ``kind``, as a new mapping with the kind its keys tell; anything else unchanged.

    Runs before the discriminated union, so an explicit ``kind`` is validated
    as written and a guessed one as strictly (unknown keys are errors).
    """
    if not isinstance(entry, dict) or "kind" in entry:
        return entry
    telling = [key for key in _KIND_OF_KEY if key in entry]
    if not telling:
        raise ValueError("cannot guess the source's kind: give one of the keys url, path, graph, device, or kind "
                         "(kind: synthetic for the built-in test camera)")
    if len(telling) > 1:
        keys = ", ".join(repr(key) for key in telling[:-1]) + f" and {telling[-1]!r}"
        raise ValueError(f"cannot guess the source's kind: {keys} are given together; keep one, or set kind")
    key = telling[0]
    location = entry[key]
    if key == "url" and isinstance(location, int) and not isinstance(location, bool) and location >= 0:
        location = str(location)  # YAML reads `url: 0` as a number: the webcam index it would be on the command line
    if key == "url" and isinstance(location, str):
        rest = {name: value for name, value in entry.items() if name != "url"}
        return {**rest, **_fields_of_location(location)}
    return {**entry, "kind": _KIND_OF_KEY[key]}


SourceConfig = Annotated[
    UrlSource | FileSource | LavfiSource | WebcamSource | SyntheticSource,
    Field(discriminator="kind"),
    BeforeValidator(_with_guessed_kind),
]
"""One source entry. ``kind`` may be left out: :func:`_with_guessed_kind` fills it in from the keys."""
_SOURCE_ADAPTER: TypeAdapter[SourceConfig] = TypeAdapter(SourceConfig)


def is_live(source: SourceConfig) -> bool:
    """Live sources drop the oldest frame when the detector lags."""
    if isinstance(source, FileSource):
        return source.realtime or source.loop
    return True


def reopens_at_end(source: SourceConfig) -> bool:
    """Sources whose end is a disconnect to recover from: everything but a file that does not loop."""
    if isinstance(source, FileSource):
        return source.loop
    return True


def drop_policy(source: SourceConfig) -> Literal["drop_oldest", "block"]:
    if source.drop_policy is not None:
        return source.drop_policy
    return "drop_oldest" if is_live(source) else "block"


class ModelConfig(_Strict):
    id: str = Field(DEFAULT_MODEL, description="Hub id, local directory, or 'demo'.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    name: str | None = Field(None, description="Model id served by the API (default: derived from id).")
    device: str = Field("auto", description="auto, cpu, mps, cuda or cuda:N.")
    threshold: float = Field(0.5, ge=0, le=1)
    labels: list[str] | None = Field(None, description="Only report these labels.")
    max_batch_size: int = Field(4, ge=1, le=256)
    max_batch_wait_ms: float = Field(5.0, ge=0, le=10_000)
    backend: Literal["auto", "torch", "onnx", "openvino"] = Field(
        "auto", description="Inference backend; auto picks the fastest installed one for the device "
                            "(OpenVINO on x86-64 CPUs, torch on GPUs)."
    )
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = Field(
        "auto", description="Compute precision: auto is fp16 on CUDA; on CPUs bf16 where they compute it "
                            "natively (AMX, AVX512-BF16) and it agrees with fp32 on a probe image, else fp32. "
                            "int8 (OpenVINO, needs the [int8] extra) only when asked for, and only when it finds "
                            "what fp32 finds."
    )
    calibration: str | None = Field(
        None, description="precision int8: a directory of images from your cameras to calibrate on "
                          "(default: frames of the synthetic camera)."
    )
    compile: bool = Field(False, description="torch backend: torch.compile the model (slow first frame per shape).")
    shortest_edge: int | None = Field(None, ge=16, le=8192, description="Resize images' shorter side to this.")
    longest_edge: int | None = Field(None, ge=16, le=16384, description="... keeping the longer side at most this.")

    def served_id(self) -> str:
        """The one rule for the id a model is served and named under: ``name``, the demo model's
        id, a local directory's name, or the hub id."""
        if self.name:
            return self.name
        if self.id == "demo":
            return "stream-detect/demo"
        path = Path(self.id).expanduser()
        if path.is_dir():
            return path.resolve().name
        return self.id

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError("device must be one of auto, cpu, mps, cuda, cuda:N")
        return value

    @model_validator(mode="after")
    def _calibration_for_int8(self) -> ModelConfig:
        if self.calibration is not None and self.precision != "int8":
            raise ValueError("calibration applies to precision int8 only")
        return self


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    tokens: list[str] = Field(default_factory=list, description="Bearer tokens; empty: no auth.")
    allowed_origins: list[str] = Field(
        default_factory=list, description="Extra browser origins allowed on /ws besides the server's own."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Extra Host header values accepted besides localhost, 127.0.0.1, [::1], the bind address and "
                    "public_url's host (DNS rebinding); '*' accepts any.",
    )
    public_url: str | None = Field(
        None, description="The URL users reach the server at (behind a proxy); links in notifications use it."
    )
    client_queue_size: int = Field(8, ge=1, le=1024, description="Messages buffered per websocket client.")
    send_timeout_s: float = Field(2.0, gt=0, le=60, description="A client stuck this long is disconnected.")
    max_clients: int = Field(100, ge=1, le=10_000, description="Websocket clients at most; more get 503.")
    max_mjpeg_clients: int = Field(20, ge=1, le=10_000, description="MJPEG preview viewers at most; more get 503.")
    max_message_bytes: int = Field(
        65_536, ge=1024, le=16_777_216, description="Largest websocket message a client may send (close 1009)."
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Longest wait for a request's headers; silent connections are closed."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Longest wait for a request body to arrive; slower ones get 408."
    )
    max_body_bytes: int = Field(
        20_000_000, ge=1024, le=1_000_000_000, description="Largest inference request body; larger ones get 413."
    )
    max_image_pixels: int = Field(
        40_000_000, ge=1, le=1_000_000_000, description="Largest image (width x height) the API decodes."
    )
    decode_pixels_in_flight: int = Field(
        50_000_000, ge=1_000_000, le=10_000_000_000,
        description="Pixels the API decodes at once at most (memory bound); further requests wait their turn.",
    )
    api_cache_size: int = Field(256, ge=0, le=100_000, description="Answers kept for x-use-cache; 0 disables.")
    api_queue_size: int = Field(64, ge=1, le=10_000, description="Inference requests waiting at most; more get 503.")
    request_timeout_s: float = Field(60.0, gt=0, le=3600, description="Longest wait for the detector per request.")
    preview_fps: float = Field(15.0, gt=0, le=60, description="Frame rate cap of the live MJPEG preview.")
    jpeg_quality: int = Field(80, ge=10, le=100, description="JPEG quality of previews and snapshots.")

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, value: list[str]) -> list[str]:
        # Messages never carry a token, not even a malformed one.
        for index, token in enumerate(value):
            if not token.strip():
                raise ValueError(f"token {index} is empty; an empty token would turn authentication off "
                                 "(leave 'tokens' out for no authentication)")
            if token != token.strip():
                raise ValueError(f"token {index} starts or ends with white space, which clients cannot send")
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("public_url must be an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        hosts = [host.strip().lower() for host in value]
        for host in hosts:
            if not host or any(c in host for c in "/@ \t"):
                raise ValueError(f"allowed host {host!r} must be a host name or address, without scheme or path")
        return hosts


DEFAULT_MODEL_NAME = "default"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class EventsConfig(_Strict):
    """The event history: tracked streams' events kept in DATA_DIR/events.db (SQLite)."""

    enabled: bool = Field(True, description="Keep events (GET /events, /counts); false: websocket only.")
    max_age_days: float | None = Field(30.0, gt=0, description="Delete events older than this.")
    max_events: int | None = Field(1_000_000, ge=1, description="Keep at most this many, the newest.")
    clips: bool = Field(True, description="Keep a clip of each tracked object (H.264 MP4, /events/{id}/clip.mp4).")
    clip_pre_s: float = Field(5.0, ge=0, le=60, description="Seconds of a clip before its object's first frame.")
    clip_post_s: float = Field(5.0, ge=0, le=60, description="Seconds of a clip after its object's last frame.")


class Config(_Strict):
    model: ModelConfig = Field(ModelConfig(), description="The default model (named 'default').")
    models: dict[str, ModelConfig] = Field(
        default_factory=dict, description="More models by name; a source picks one with 'model: NAME'."
    )
    server: ServerConfig = ServerConfig()
    sources: list[SourceConfig] = Field(default_factory=list)
    record: RecordConfig | None = Field(None, description="Record every stream (per-source 'record' overrides).")
    data_dir: str | None = Field(
        None, description="Where stream-detect keeps its state (cameras changed at run time); "
                          "default: $XDG_DATA_HOME/stream-detect or ~/.local/share/stream-detect.",
    )
    events: EventsConfig = EventsConfig()
    mqtt: MqttConfig | None = Field(None, description="Events, counts and snapshots to an MQTT broker; "
                                                      "Home Assistant discovery.")
    webhooks: list[WebhookConfig] = Field(
        default_factory=list, description="Each event POSTed, signed (Standard Webhooks), to these receivers.")
    cluster: ClusterConfig | None = Field(None, description="Run the cameras and detectors on a Ray cluster "
                                                            "(stream-detect run --cluster ADDRESS).")

    def recording_of(self, source: SourceConfig) -> RecordConfig | None:
        """The recording settings that apply to ``source``, or None."""
        if source.record is False:
            return None
        return source.record or self.record

    def named_models(self) -> dict[str, ModelConfig]:
        """Every model by name: ``default`` (the top-level ``model``) first, then ``models``."""
        return {DEFAULT_MODEL_NAME: self.model, **self.models}

    @staticmethod
    def model_of(source: SourceConfig) -> str:
        """The name of the model that serves ``source``."""
        return source.model or DEFAULT_MODEL_NAME

    @field_validator("models")
    @classmethod
    def _check_models(cls, models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        named = {}
        for name, model in models.items():
            if name == DEFAULT_MODEL_NAME:
                raise ValueError(f"{name!r} is the top-level 'model'; give this model another name")
            if not MODEL_NAME.fullmatch(name):
                raise ValueError(f"model name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
            # A named model is served, and named in messages, under its name unless it says otherwise.
            named[name] = model if model.name else model.model_copy(update={"name": name})
        return named

    @model_validator(mode="after")
    def _unique_ids(self) -> Config:
        seen: set[str] = set()
        for source in self.sources:
            if source.id in seen:
                raise ValueError(f"duplicate stream id {source.id!r}")
            seen.add(source.id)
            if source.model is not None and source.model not in self.models:
                known = ", ".join(sorted(self.models)) or "none"
                raise ValueError(f"stream {source.id!r} names model {source.model!r}, which 'models' does not "
                                 f"define (defined: {known})")
        return self


SOURCE_KINDS = frozenset({"url", "file", "lavfi", "webcam", "synthetic"})


def _location(loc: tuple[int | str, ...], source_at_root: bool = False) -> str:
    """``sources.0.url.colour`` -> ``sources.0.colour``: drops the union's tag.

    With ``source_at_root`` (one source entry validated alone) the tag is the
    first part: ``url.colour`` -> ``colour``.
    """
    def is_tag(i: int, part: int | str) -> bool:
        follows_index = i == 0 if source_at_root else i == 2 and loc[0] == "sources" and isinstance(loc[1], int)
        return follows_index and part in SOURCE_KINDS

    parts = [str(part) for i, part in enumerate(loc) if not is_tag(i, part)]
    return ".".join(parts) or "(top level)"


def _shown_value(loc: tuple[int | str, ...], value: Any) -> str:
    """`` = VALUE`` for an error line: scalars only, credentials and secret settings as ``***``.

    Containers are never shown: YAML aliases can make a small file's
    container print as gigabytes (billion laughs).
    """
    if not isinstance(value, str | int | float | datetime.date) and value is not None:
        return ""
    if any(isinstance(part, str) and is_secret_name(part) for part in loc):
        return " = ***"
    shown = redact(repr(value))  # redacted whole, then cut: a cut URL could hide its '@' from redact
    if len(shown) > SHOWN_VALUE_CHARS:
        shown = shown[: SHOWN_VALUE_CHARS - 3] + "..."
    return f" = {shown}"


def _reported(errors: list[ErrorDetails]) -> ErrorDetails:
    """The error the one line tells: the first, but a missing key yields to an unknown key beside it.

    ``{kind: file, pth: a.mp4}`` misses ``path`` because ``pth`` is misspelt
    (or ``{kind: file, url: ...}`` names the wrong kind): the unknown key is
    the one to name.
    """
    first = errors[0]
    if first["type"] == "missing":
        for other in errors:
            if other["type"] == "extra_forbidden" and other["loc"][:-1] == first["loc"][:-1]:
                return other
    return first


def _format_error(error: ValidationError, origin: str, source_at_root: bool = False) -> str:
    first = _reported(error.errors())
    loc = tuple(first["loc"])
    where = _location(loc, source_at_root)
    if first["type"] == "extra_forbidden":
        return f"{origin}: unknown key {where!r}"
    message = redact(first["msg"].removeprefix("Value error, "))
    return f"{origin}: {where}{_shown_value(loc, first.get('input'))}: {message}"


def parse_config(data: Any, origin: str = "config") -> Config:
    """Validates a configuration mapping. Raises ConfigError with one line."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_error(error, origin)) from None


def parse_source(data: Any, origin: str) -> SourceConfig:
    """Validates one source entry (as in ``sources:``, ``kind`` guessed when left out).

    For sources added at run time. Raises ConfigError with one line, formatted
    as :func:`parse_config`'s but with keys relative to the entry.
    """
    try:
        return _SOURCE_ADAPTER.validate_python(data)
    except ValidationError as error:
        raise ConfigError(_format_error(error, origin, source_at_root=True)) from None


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose value errors are YAML errors with their line.

    SafeLoader lets plain exceptions out of some values: ``int()`` of more
    than 4,300 digits and ``!!timestamp 2024-13-01`` (ValueError), ``!!bool x``
    (KeyError), ``!!timestamp x`` (AttributeError).
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, LookupError, AttributeError, TypeError, ArithmeticError) as error:
            if isinstance(error, ValueError) and "integer string conversion" in str(error):
                problem = f"a number has more than {sys.get_int_max_str_digits()} digits"
            elif isinstance(error, ValueError) and str(error):
                problem = str(error).splitlines()[0][:SHOWN_VALUE_CHARS]
            else:
                problem = f"not a valid !!{node.tag.rpartition(':')[2]}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def _yaml_problem(error: yaml.YAMLError, text: str) -> str:
    """`` line N: what`` of a YAML error, on one line."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f" line {mark.line + 1}:" if mark is not None else ""
        return f"{where} invalid YAML: {error.problem or error.context or type(error).__name__}"
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        character = f"#x{error.character:04x}" if isinstance(error.character, int) else repr(error.character)
        return f" line {line}: invalid YAML: character {character}: {error.reason}"
    return f" invalid YAML: {str(error).splitlines()[0] if str(error) else type(error).__name__}"


def load_config(path: str | os.PathLike[str]) -> Config:
    """Reads and validates a YAML configuration file (UTF-8, at most 1 MiB)."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read config {name!r}: {error.strerror or error}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{name}: larger than {MAX_CONFIG_BYTES // 1024} KiB, too large for a configuration")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(f"{name}: line {line}: not UTF-8 text (byte 0x{raw[error.start]:02x})") from None
    try:
        data = yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as error:
        raise ConfigError(f"{name}:{_yaml_problem(error, text)}") from None
    except RecursionError:
        raise ConfigError(f"{name}: invalid YAML: nested too deeply") from None
    return parse_config(data, origin=name)
