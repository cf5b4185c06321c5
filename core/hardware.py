"""What this machine is, read rather than guessed (standard library only, cheap to import):
the CPU's name, flags, usable cores and clock, and its nominal fp32 (and AMX bf16) peak
where the micro-architecture is known. ``reporting/manifest.py`` and ``benchmark.py`` report these;
``performance.py`` decides with them.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 dot products in hardware
AMX_BF16 = "amx_bf16"  # Intel's AMX tile matrix unit for bf16 (Sapphire Rapids and later): where bf16 autocast pays
AMX_BF16_FLOPS_PER_CYCLE = 1024  # per core: Intel's figure for AMX-BF16 (1,024 bf16 operations per cycle)
# pixels a side of an input image: above it one feature map of a CIFAR-stem network alone needs gigabytes, so
# data.image_size, summarize.py input_size, benchmark.py image_size and a card's image size are refused beyond it
MAX_IMAGE_SIZE = 1024
REPORTED_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "asimd", "sve")


def _cpuinfo(field: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str | None:
    """The processor's marketing name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    return _cpuinfo("model name") or platform.processor() or None


def cpu_flags() -> set[str]:
    """The instruction-set flags of the first processor (empty where unreadable)."""
    return set((_cpuinfo("flags") or _cpuinfo("Features") or "").split())


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    return bool(set(BF16_CPU_FLAGS) & (cpu_flags() if flags is None else flags))


def cpu_has_amx_bf16(flags: set[str] | None = None) -> bool:
    return AMX_BF16 in (cpu_flags() if flags is None else flags)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, as a scheduler or ``taskset`` set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fp32_flops_per_cycle(vendor: str | None, family: int | None, flags: set[str]) -> int | None:
    """fp32 FLOPs per cycle per core of the FMA units, where known: two FMA pipes of the widest vector.

    AMD Zen 5 (family 26): two 512-bit FMA pipes = 64; Zen 1-4 (families 23, 25): 256-bit
    data paths (Zen 4 splits AVX-512 in two) = 32; Intel with AVX-512: two 512-bit FMA
    units on server parts = 64 (one on some client parts: an upper bound); AVX2 + FMA = 32.
    """
    if "fma" not in flags:
        return None
    if vendor == "AuthenticAMD":
        return {26: 64, 25: 32, 23: 32}.get(family)
    if vendor == "GenuineIntel":
        return 64 if "avx512f" in flags else 32
    return None


def cpu() -> dict:
    """Model, flags that matter for speed, cores and the peak per core at the nominal clock (GFLOP/s): fp32 of
    the FMA units, bf16 of AMX where the CPU has it. The nominal clock is what ``/proc/cpuinfo`` reports
    (in a VM, usually the base clock); cores under load often run faster, so a measured matrix product
    may exceed these figures."""
    flags = cpu_flags()
    family = _cpuinfo("cpu family")
    mhz = _cpuinfo("cpu MHz")
    per_cycle = fp32_flops_per_cycle(_cpuinfo("vendor_id"), int(family) if family else None, flags)
    bf16_per_cycle = AMX_BF16_FLOPS_PER_CYCLE if cpu_has_amx_bf16(flags) else None
    nominal = lambda flops: flops * float(mhz) / 1e3 if flops and mhz else None  # noqa: E731
    return {
        "model": cpu_model(), "vendor": _cpuinfo("vendor_id"), "family": int(family) if family else None,
        "flags": sorted(flags & set(REPORTED_FLAGS)), "bf16": cpu_has_bf16(flags), "amx_bf16": cpu_has_amx_bf16(flags),
        "cores_usable": usable_cores(), "cores_total": os.cpu_count(), "mhz": float(mhz) if mhz else None,
        "fp32_flops_per_cycle": per_cycle, "bf16_flops_per_cycle": bf16_per_cycle,
        "nominal_fp32_gflops_per_core": nominal(per_cycle), "nominal_bf16_gflops_per_core": nominal(bf16_per_cycle),
    }
