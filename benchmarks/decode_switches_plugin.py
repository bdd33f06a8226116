"""pytest plugin (`-p decode_switches_plugin`, benchmarks/ on PYTHONPATH): runs the decode tests with the
ops/decode_kernels settings named in $DECODE_SWITCHES, in every xdist worker too: NAME (set True) or NAME=VALUE (a
Python literal), e.g. "LANES_COMBINE=False PDL_COMBINE=False" for the merge as it was before the twelfth session."""
import ast


def pytest_configure(config):
    import os

    from autoflash.ops import decode_kernels

    for item in os.environ.get("DECODE_SWITCHES", "").split():
        name, _, value = item.partition("=")
        assert hasattr(decode_kernels, name), name
        setattr(decode_kernels, name, ast.literal_eval(value) if value else True)
