"""Generic kernel machinery, the same for every operation: archs and element types,
the config and template base classes, the registry, render (Jinja2), compile (NVRTC,
disk cache), loaded kernels on a GPU, device arrays, TMA descriptors."""
