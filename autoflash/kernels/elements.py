"""Element types and the constants every kernel and its host code share (one owner each)."""
from __future__ import annotations

DTYPES = ("fp32", "fp16", "bf16")
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
# The C++ element type a template is rendered with, per dtype.
ELEMENT_TYPES = {"fp32": "float", "fp16": "__half", "bf16": "__nv_bfloat16"}
LOG2E = 1.4426950408889634  # log2(e): the kernels run softmax in base 2 and take scale * LOG2E
