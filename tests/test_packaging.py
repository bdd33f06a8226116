"""A wheel carries templates/ and tuned_configs/ inside the package, and an installed
autoflash finds them outside a checkout."""
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(ROOT)], check=True, cwd=out)
    (path,) = out.glob("autoflash-*.whl")
    return path


def test_wheel_contains_templates_and_configs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for template in (ROOT / "templates").glob("*.j2"):
        assert f"autoflash/templates/{template.name}" in names
    for cfg in (ROOT / "tuned_configs").glob("*.json"):
        assert f"autoflash/tuned_configs/{cfg.name}" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_installed_wheel_renders_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], check=True)
    # its dependencies from this interpreter's site directories (a venv's, not only the base Python's, which on a
    # fresh machine lacks them), listed after the wheel's own site-packages; their .pth files, such as the checkout's
    # editable install, are not read from there
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "parent_site.pth").write_text("\n".join(site.getsitepackages() + [site.getusersitepackages()]) + "\n")
    code = (
        "import autoflash, autoflash.kernels.render as r; from autoflash.kernels.registry import TEMPLATES;"
        "assert 'site-packages' in str(r.templates_dir()), r.templates_dir();"
        "cfg = TEMPLATES['flash_fwd_simt'].default('sm_90', {'dtype': 'bf16', 'head_dim': 128, 'causal': True});"
        "print(len(r.render(cfg)))"
    )
    result = subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 1000
