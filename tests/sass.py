"""The SASS of a compiled kernel, read with cuobjdump (PyPI: nvidia-cuda-cuobjdump and
nvidia-cuda-nvdisasm, in the test extra): checks of the machine code run without a GPU,
and skip, saying what to install, where the tools are missing."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

INSTALL = "pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm"


def cuobjdump() -> str | None:
    """cuobjdump on PATH, in the CUDA toolkit, or from the PyPI wheels."""
    for found in (shutil.which("cuobjdump"), "/usr/local/cuda/bin/cuobjdump"):
        if found and Path(found).exists():
            return str(found)
    try:
        import nvidia
    except ImportError:
        return None
    for root in nvidia.__path__:
        for path in sorted(Path(root).glob("*/bin/cuobjdump")):
            return str(path)
    return None


def sass(cubin: bytes, tmp_path: Path, function: str | None = None) -> str:
    """The SASS of a cubin (of one of its functions if named); skips the test without the tools."""
    tool = cuobjdump()
    if tool is None:
        pytest.skip(f"no cuobjdump to read the SASS ({INSTALL})")
    path = tmp_path / "kernel.cubin"
    path.write_bytes(cubin)
    env = dict(os.environ, PATH=str(Path(tool).parent) + os.pathsep + os.environ.get("PATH", ""))  # its nvdisasm
    done = subprocess.run([tool, "-sass", str(path)], capture_output=True, text=True, env=env)
    if done.returncode != 0 or "nvdisasm" in done.stderr:
        pytest.skip(f"cuobjdump could not disassemble ({INSTALL}): {done.stderr.strip()[:200]}")
    text = done.stdout
    if function is None:
        return text
    main = text[text.index(f"Function : {function}\n"):]
    return main[:main.index("Function : ", 20)] if "Function : " in main[20:] else main
