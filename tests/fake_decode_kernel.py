"""What the decode tests use to check DecodePlan's launches without a GPU: a stand-in for the
loaded kernel that records each launch's arguments instead of making it, and the check that a
recorded launch passes one argument of the right C type per parameter of the rendered kernel."""
import re

# the numpy scalar type DecodePlan passes for each C parameter type (pointers go as uint64)
_C_TYPE_OF = {"uint64": "*", "int64": "long long", "int32": "int", "float32": "float"}


def kernel_params(src: str, name: str) -> list[str]:
    """The parameters of kernel `name` in rendered source `src`, whitespace collapsed ("const int n")."""
    sig = re.search(re.escape(name) + r"\((.*?)\)\s*\{", src, re.S).group(1)
    return [" ".join(p.split()) for p in sig.split(",")]


def launch_args_by_name(src: str, name: str, args) -> dict:
    """A recorded launch's arguments by parameter name, after checking that there is one per
    parameter of kernel `name` in `src` and that each has its parameter's C type."""
    params = kernel_params(src, name)
    assert len(args) == len(params), (params, args)
    for param, arg in zip(params, args):
        want = "*" if "*" in param else param.rsplit(" ", 1)[0].replace("const ", "")
        assert _C_TYPE_OF[type(arg).__name__] == want, (param, arg)
    return dict(zip((p.rsplit(" ", 1)[1] for p in params), args))


class Recorder:
    """A kernel function that records the arguments of each launch."""

    def __init__(self):
        self.calls = []

    def __call__(self, grid, block, args, **kw):
        self.calls.append(args)


class FakeKernel:
    """What DecodePlan reads of a LoadedKernel, recording launches instead of making them."""

    def __init__(self, cfg):
        self.config, self.smem, self.device_id = cfg, 0, 0
        self.function, self.combine = Recorder(), Recorder()

    def function_named(self, suffix):
        return self.combine
