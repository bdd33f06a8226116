"""Serving: autoflash.attention() (api.py), which config serves a problem (dispatch.py)."""
