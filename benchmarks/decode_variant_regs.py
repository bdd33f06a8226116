"""ptxas registers and spills of flash_decode_mma's split and combine kernels, plain and with every
combination of the variant flags (window, softcap, sinks, alibi), on the shapes benchmarks/NOTES.md
quotes. No GPU needed: NVRTC compiles here. Usage: python benchmarks/decode_variant_regs.py"""
import itertools
import re

from autoflash.kernels.compile import compile_kernel
from autoflash.ops.decode import DECODE
from autoflash.ops.decode_kernels import VARIANT_FLAGS

SHAPES = [("sm_90", dict(dtype="bf16", head_dim=128, m_tiles=2), {}),
          ("sm_90", dict(dtype="bf16", head_dim=128, m_tiles=1), {}),
          ("sm_80", dict(dtype="bf16", head_dim=128, m_tiles=1), {}),
          ("sm_80", dict(dtype="fp16", head_dim=128, m_tiles=2), {}),
          ("sm_90", dict(dtype="bf16", head_dim=256, m_tiles=1), {}),
          ("sm_90", dict(dtype="bf16", head_dim=64, m_tiles=1), {}),
          ("sm_90", dict(dtype="bf16", head_dim=128, m_tiles=1, paged=True), {}),
          ("sm_90", dict(dtype="bf16", head_dim=128, m_tiles=1), dict(bulk_copy=True, l2_prefetch=0)),
          ("sm_80", dict(dtype="bf16", head_dim=64, m_tiles=1), dict(fused_combine=True))]


def main() -> None:
    for arch, key, knobs in SHAPES:
        for bits in itertools.product((False, True), repeat=len(VARIANT_FLAGS)):
            c = DECODE.default(arch, {**key, **dict(zip(VARIANT_FLAGS, bits))}).replace(**knobs)
            parts = re.split(r"Compiling entry function '([^']+)'", compile_kernel(c, use_cache=False).log)
            for name, text in zip(parts[1::2], parts[2::2]):
                regs = re.search(r"Used (\d+) registers", text).group(1)
                stack, spill = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores", text).groups()
                print(f"{name} {regs} registers, stack {stack}, spill stores {spill}", flush=True)


if __name__ == "__main__":
    main()
