"""flash_bwd_wgmma's UNIFORM_WG values (ops/backward_wgmma.py: 1, 2, 3, 4) as this machine's NVRTC compiles them: the
served kernels of each bf16/fp16 x D 64/128 x causal key (the tuned entries of N 4096 and 16384, the template's
default: 12 kernels on the H200), switch off and at each value, compiled in parallel (into the compile cache the A/B
then reads); per kernel registers, spilled bytes, stack frame, serialised wgmma (ptxas C7511).
A value is clean when all of its kernels have none of the three; the pick is the first clean value of PREFERENCE.
Prints "clean: 2,3,4" and "pick: 4" last (empty when none is clean) for benchmarks/bwd_uniform_wg_pick_run.sh.

    PYTHONPATH=$PWD:$PWD/benchmarks:$PWD/tests python benchmarks/bwd_uniform_wg_pick.py
"""
import itertools
from concurrent.futures import ProcessPoolExecutor

from dq_ab import _compile
from test_backward_wgmma import key

from autoflash.kernels.compile import nvrtc_version
from autoflash.ops.backward_wgmma import serving_config
from autoflash.serve.autograd import _served_config as served_config

VALUES = (1, 2, 3, 4)
# 4 and 1 keep the most instructions off the consumer loop (the same loop with NVRTC 13.5; 13.0 spills 1 at D 128);
# 3 leaves the producer's path as served; 2 differs from 3 only there
PREFERENCE = (4, 1, 3, 2)


def main() -> None:
    from autoflash.kernels import device

    arch, name = device.device_arch(0)
    print(f"# {name} {arch}, NVRTC {nvrtc_version()}", flush=True)
    configs = {}  # name -> config: what attention_backward serves at N 4096 and 16384 (tuned entry) and the default
    for dtype, d, causal in itertools.product(("bf16", "fp16"), (64, 128), (False, True)):
        k = key(dtype, d, causal)
        for c in (served_config(0, k, 4096), served_config(0, k, 16384), serving_config(arch, k)):
            configs.setdefault(c.name, c)
    configs = list(configs.values())
    items = [(c, {"UNIFORM_WG": value}) for value in (False, *VALUES) for c in configs]
    with ProcessPoolExecutor() as pool:
        reports = list(pool.map(_compile, items))
    clean = {value: True for value in VALUES}
    print("| kernel | UNIFORM_WG | registers | spilled B | stack B | serialised |\n|---|---|---|---|---|---|")
    for (c, switches), rep in zip(items, reports):
        value = switches["UNIFORM_WG"]
        bad = rep.spills > 0 or rep.stack_frame > 0 or rep.wgmma_serialized
        if value and bad:
            clean[value] = False
        print(f"| {c.name} | {int(value)} | {rep.registers} | {rep.spills} | {rep.stack_frame} "
              f"| {rep.wgmma_serialized} |")
    ok = [v for v in VALUES if clean[v]]
    print("clean: " + ",".join(map(str, ok)))
    print("pick: " + "".join(str(v) for v in PREFERENCE if v in ok)[:1])


if __name__ == "__main__":
    main()
