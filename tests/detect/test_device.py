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
