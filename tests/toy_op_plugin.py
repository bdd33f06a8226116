"""Named in $AUTOFLASH_PLUGINS, so every autoflash process of a test run imports it: registers the toy
operation there (the spawned process has the tests' sys.path)."""
from autoflash.kernels.registry import register_operation
from toy_op import TOY

register_operation(TOY)
