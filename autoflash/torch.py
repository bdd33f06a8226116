"""`autoflash.torch`: the public name of the PyTorch drop-in, which lives in
autoflash.integrations.torch. This module is that module (importing it imports torch)."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("autoflash.integrations.torch")
