from cupy.cuda import nvrtc

from autoflash.kernels import compile as afc
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render

print("nvrtc", nvrtc.getVersion())
for d, c in ((32, False), (64, False), (64, True)):
    cfg = TEMPLATES["flash_fwd_simt"].default("sm_90", {"dtype": "fp32", "head_dim": d, "causal": c})
    for i in range(2):
        cubin, text = afc._nvrtc_compile(render(cfg), cfg)
        print(cfg.name, i, len(cubin), repr(text[-300:]))
