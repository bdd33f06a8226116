"""benchmarks/sass_census.py (the per-key-tile instruction census of a kernel's main loop) without a GPU:
the loop finder and path counts on a hand-written SASS fragment, then one served plain config compiled
with NVRTC and read with cuobjdump (skipped without it, tests/sass.py)."""
import importlib.util
from pathlib import Path

import pytest

from sass import INSTALL, cuobjdump

PATH = Path(__file__).parent.parent / "benchmarks" / "sass_census.py"
spec = importlib.util.spec_from_file_location("sass_census", PATH)
census = importlib.util.module_from_spec(spec)
spec.loader.exec_module(census)

# A consumer-like function: a spin wait, then a loop body with two HGMMAs, a warp-uniform diamond (a masked
# path with two more instructions), a BRA.DIV whose fallthrough is the usual path, and an out-of-line retry
# block that jumps back into the body (a back edge that is no loop: no forward path reaches it).
FRAGMENT = """
        Function : k
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   SYNCS.PHASECHK.TRANS64.TRYWAIT P0, [R2], R3 ;
        /*0020*/              @!P0 BRA 0x10 ;
        /*0030*/                   HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], RZ, !UPT ;
        /*0040*/                   HGMMA.64x64x16.F32.BF16 R88, gdesc[UR8], R88, gsb0 ;
        /*0050*/              @!P1 BRA 0x300 ;
        /*0060*/                   MUFU.EX2 R4, R4 ;
        /*0070*/               @P2 BRA 0xa0 ;
        /*0080*/                   ISETP.GE.AND P3, PT, R5, R6, PT ;
        /*0090*/                   FSEL R4, R4, -INF , !P3 ;
        /*00a0*/                   FFMA.FTZ R7, R4, R8, R9 ;
        /*00b0*/                   BRA.DIV UR4, 0x310 ;
        /*00c0*/                   SHFL.BFLY PT, R10, R7, 0x1, 0x1f ;
        /*00d0*/                   FADD.FTZ R11, R11, R7 ;
        /*00e0*/               @P4 BRA 0x30 ;
        /*00f0*/                   EXIT ;
        /*0300*/                   SYNCS.PHASECHK.TRANS64.TRYWAIT P1, [R2], R3 ;
        /*0310*/                   BRA 0x60 ;
        /*0320*/                   NOP ;
"""


def test_main_loop_paths_on_a_fragment():
    ins = census.parse(FRAGMENT)
    start, end, paths = census.main_loop(ins)
    assert (start, end) == (0x30, 0xE0)  # not the spin wait (no HGMMA), not the retry block's jump back
    low, high = census.census(paths["min"]), census.census(paths["max"])
    assert low["hgmma"] == high["hgmma"] == 2 and low["ex2"] == 1 and low["shfl"] == 1
    assert high["total"] - low["total"] == 2 and high["cmp_sel"] == 2 and low["cmp_sel"] == 0
    bounds = census.bounds(paths["min"])
    assert bounds["tensor"] == 2 * 64 * (128 + 64) * 16 / 4096 and bounds["mufu"] == 8


def test_served_plain_kernel_counts_hgmma_and_ex2(capsys):
    if cuobjdump() is None:
        pytest.skip(f"no cuobjdump to read the SASS ({INSTALL})")
    cfg = census.served_config("flash_fwd_wgmma", "bf16", 64, False, "plain", "128x128x2")
    result = census.run(cfg)
    low = census.census(result["paths"]["min"])
    # D 64, Bc 128: S = Qi Kj^T in 4 k-steps of 64x128x16, O += P Vj in 8 of 64x64x16; one exp2 per score
    # (64 a thread) and the two rows' rescale factors
    assert low["hgmma"] == 12 and set(result["hgmma"]) == {"HGMMA.64x128x16.F32.BF16", "HGMMA.64x64x16.F32.BF16"}
    assert low["ex2"] == 128 // 2 + 2 and low["mufu_other"] == 0
    census.main(["--head-dim", "64", "--variant", "plain", "--tiles", "128x128x2"])
    out = capsys.readouterr().out
    assert "flash_fwd_wgmma_sm_90a_bf16_d64_br128_bc128_w12_s2" in out and "  min " in out and "  max " in out
