"""Serving: autoflash.attention() (api.py) and attention_with_kvcache() (kvcache.py); which operation
serves a call and what is differentiable (routing.py); the decode call for PyTorch tensors
(decode.py); gradients (autograd.py); which config serves a problem (dispatch.py)."""
