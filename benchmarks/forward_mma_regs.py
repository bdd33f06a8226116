"""ptxas registers / spills of flash_fwd_mma configs (tests/test_mma.py REPRESENTATIVE + the
sm_80/sm_90 bf16 defaults) for a checkout: python benchmarks/forward_mma_regs.py <checkout dir>."""
import sys, importlib
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests")
import autoflash.kernels.compile as afc
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import KernelConfig
import test_mma
cfgs = list(test_mma.REPRESENTATIVE)
for d in (64, 128):
    for causal in (False, True):
        for dt in ("bf16",):
            for arch in ("sm_80", "sm_90"):
                try: cfgs.append(TEMPLATES["flash_fwd_mma"].default(arch, {"dtype": dt, "head_dim": d, "causal": causal}))
                except Exception as e: print(e)
for c in cfgs:
    r = afc.compile_kernel(c).report
    print(f"{c.name:70s} regs {r.registers:4d} spills {r.spills} stack {r.stack_frame}")
