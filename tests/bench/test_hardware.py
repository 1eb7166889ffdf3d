"""The CPU peak the forward pass is compared with: reckoned from /proc/cpuinfo as the CPU executes."""

from __future__ import annotations

import math

import pytest

from stream_detect.bench.hardware import cpu_peak_gflops


def cpuinfo(vendor: str, family: int, flags: str, mhz: float, processors: int = 2) -> str:
    block = (f"vendor_id\t: {vendor}\ncpu family\t: {family}\nmodel name\t: some CPU\n"
             f"cpu MHz\t\t: {mhz}\nflags\t\t: fpu sse2 {flags}\n")
    return "\n".join(f"processor\t: {i}\n{block}" for i in range(processors))


def test_zen4_runs_avx512_on_256_bit_units_and_bf16_doubles_it() -> None:
    text = cpuinfo("AuthenticAMD", 25, "avx2 fma avx512f avx512_bf16", 2600.0)
    peak, reckoned = cpu_peak_gflops("fp32", text)
    assert peak == pytest.approx(2 * 2.6 * 32) and "Zen 4" in reckoned and "2 cores" in reckoned
    bf16, reckoned = cpu_peak_gflops("bf16", text)
    assert bf16 == pytest.approx(2 * peak) and "VDPBF16PS" in reckoned


def test_full_width_avx512_avx2_and_what_is_not_reckoned() -> None:
    intel = cpuinfo("GenuineIntel", 6, "avx2 fma avx512f", 3000.0, processors=4)
    assert cpu_peak_gflops("fp32", intel)[0] == pytest.approx(4 * 3.0 * 64)
    assert math.isnan(cpu_peak_gflops("bf16", intel)[0])  # no native bf16
    amd_avx2 = cpuinfo("AuthenticAMD", 25, "avx2 fma", 2450.0)
    assert cpu_peak_gflops("fp32", amd_avx2)[0] == pytest.approx(2 * 2.45 * 32)
    amx = cpuinfo("GenuineIntel", 6, "avx2 fma avx512f avx512_bf16 amx_bf16", 2000.0)
    peak, reckoned = cpu_peak_gflops("bf16", amx)
    assert math.isnan(peak) and "AMX" in reckoned
