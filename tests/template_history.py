"""Templates as a git revision had them, for the render-identity tests of switches that are off by default
(test_wgmma_fd.py, test_backward_wgmma_bd.py)."""
import subprocess

import pytest

from autoflash.kernels.render import environment, templates_dir


def templates_at(revision: str, names, folder):
    """A Jinja environment over `names` (files in templates/) as they were at `revision`, written to `folder`;
    skips the test where git or that history is not available."""
    root = templates_dir().parent
    try:
        for name in names:
            old = subprocess.run(["git", "show", f"{revision}:templates/{name}"], cwd=root, capture_output=True,
                                 text=True, check=True).stdout
            (folder / name).write_text(old)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"git history with {revision} is not available (a shallow clone or an installed wheel)")
    return environment(str(folder))
