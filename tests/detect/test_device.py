import pytest
import torch

from stream_detect.detect.device import resolve_device
from stream_detect.errors import ModelError


def test_auto_is_cpu_here_in_fp32() -> None:
    device = resolve_device("auto")
    if not torch.cuda.is_available():
        assert device.torch_device.type in ("cpu", "mps")
        assert device.dtype == torch.float32
        tensor = torch.ones(2)
        assert device.to_device(tensor) is tensor


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_clear_error(spec: str) -> None:
    with pytest.raises(ModelError, match=f"'{spec}'.*CUDA is not available"):
        resolve_device(spec)


@pytest.mark.parametrize("spec", ["gpu", "cpu:0", "cuda:x"])
def test_bad_specs_are_refused(spec: str) -> None:
    with pytest.raises(ModelError, match=repr(spec)):
        resolve_device(spec)


def test_precision_per_device() -> None:
    cpu = resolve_device("cpu")
    assert cpu.compute_dtype("auto") == torch.float32
    assert cpu.compute_dtype("fp32") == torch.float32
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if cpu.supports(precision):
            assert cpu.compute_dtype(precision) == dtype
        else:
            with pytest.raises(ModelError, match=f"'{precision}' is not supported on cpu"):
                cpu.compute_dtype(precision)
    with pytest.raises(ModelError, match="'int4'"):
        cpu.compute_dtype("int4")


def test_cpu_skips_the_pinned_staging_buffers() -> None:
    cpu = resolve_device("cpu")
    host = torch.arange(12, dtype=torch.uint8).reshape(2, 2, 3)
    assert cpu.host_to_device(host) is host  # no copy, no pinned memory
    assert len(cpu.pinned) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_reuses_one_pinned_buffer_per_shape() -> None:
    cuda = resolve_device("cuda")
    assert cuda.compute_dtype("auto") == torch.float16
    for value in range(3):
        host = torch.full((4, 5, 3), value, dtype=torch.uint8)
        on_device = cuda.host_to_device(host)
        assert on_device.device.type == "cuda" and int(on_device.max()) == value
    assert len(cuda.pinned) == 1


def test_video_codecs_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_detect.detect import device as device_module
    from stream_detect.detect.device import Device

    cpu = resolve_device("cpu")
    assert cpu.video_decoder("h264") is None and cpu.video_encoder() == "libx264"
    with pytest.raises(ModelError, match="NVDEC"):
        cpu.video_decoder("h264", "nvidia")
    with pytest.raises(ModelError, match="h264_nvenc"):
        cpu.video_encoder("nvidia")
    with pytest.raises(ModelError, match="'vaapi'"):
        cpu.video_decoder("h264", "vaapi")
    # A CUDA device whose FFmpeg has NVDEC/NVENC (structure only: nothing is opened).
    cuda = Device(torch.device("cuda", 0), torch.float16)
    monkeypatch.setattr(device_module, "codec_available", lambda name, mode: True)
    assert cuda.video_decoder("h264") == "h264_cuvid" and cuda.video_decoder("hevc") == "hevc_cuvid"
    assert cuda.video_decoder("h264", "software") is None
    assert cuda.video_decoder("mjpeg") is None  # no NVDEC decoder for it: FFmpeg's own
    assert cuda.video_encoder() == "h264_nvenc" and cuda.video_encoder("software") == "libx264"
    monkeypatch.setattr(device_module, "codec_available", lambda name, mode: False)
    assert cuda.video_decoder("h264") is None and cuda.video_encoder() == "libx264"


def test_a_file_encoder_beside_a_cpu_detector_takes_a_quarter_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_detect.detect import device as device_module
    from stream_detect.detect.device import Device

    cpu = resolve_device("cpu")
    for cores, threads in ((1, 1), (2, 1), (7, 1), (8, 2), (64, 16)):
        monkeypatch.setattr(device_module, "usable_cores", lambda cores=cores: cores)
        assert cpu.file_encoder_threads() == threads
    assert Device(torch.device("cuda", 0), torch.float16).file_encoder_threads() is None  # x264 decides
