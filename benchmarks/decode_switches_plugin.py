"""pytest plugin (`-p decode_switches_plugin`, benchmarks/ on PYTHONPATH): runs the decode tests with the
decode_kernels experiment switches named in $DECODE_SWITCHES on (e.g. "WARP_COMBINE PDL_COMBINE"), in every
xdist worker too."""


def pytest_configure(config):
    import os

    from autoflash.ops import decode_kernels

    for name in os.environ.get("DECODE_SWITCHES", "").split():
        assert hasattr(decode_kernels, name), name
        setattr(decode_kernels, name, True)
