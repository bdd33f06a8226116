"""Drop-ins for other libraries (torch.py: torch.nn.functional.scaled_dot_product_attention)."""
