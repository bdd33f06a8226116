from autoflash.variants import VARIANTS
from autoflash import compile as afc
from cupy.cuda import nvrtc
print("nvrtc", nvrtc.getVersion())
for d, c in ((32, False), (64, False), (64, True)):
    cfg = VARIANTS["flash_fwd_simt"].default("sm_90", "fp32", d, c)
    for i in range(2):
        cubin, text = afc._nvrtc_compile(afc.render.__globals__["render"](cfg) if False else __import__("autoflash.render", fromlist=["render"]).render(cfg), cfg)
        print(cfg.name, i, len(cubin), repr(text[-300:]))
