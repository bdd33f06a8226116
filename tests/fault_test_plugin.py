"""Named in $AUTOFLASH_PLUGINS, so every autoflash process of a test run imports it: registers the
test-only fault_test template there (the spawned process has the tests' sys.path)."""
from autoflash.kernels.registry import register_template
from fault_test_template import TEMPLATE

register_template(TEMPLATE)
