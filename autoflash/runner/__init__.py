"""Runners: where compiled kernels are verified and timed (see protocol.py for the
messages, gpu.py and standin.py for the two backends, process.py for how they run)."""
