"""autoflash.export: a kernel as <name>.cu + <name>.h, built with nvcc and by the
CMake example in examples/cpp (no GPU needed to build; the gpu test runs it)."""
import argparse
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from autoflash import KernelConfig
from autoflash.export import (ExportError, add_arguments, export_kernel, export_main, exportable,
                              exportable_config)
from autoflash.kernels.registry import TEMPLATES
from conftest import fwd_key as K

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cpp"

MMA_80 = KernelConfig(template="flash_fwd_mma", arch="sm_80", dtype="fp16", head_dim=64, causal=True,
                      block_m=128, block_n=64, warps=4, stages=2)
MMA_90 = KernelConfig(template="flash_fwd_mma", arch="sm_90", dtype="bf16", head_dim=128, causal=False,
                      block_m=128, block_n=32, warps=4, stages=2)
SIMT_80 = KernelConfig(template="flash_fwd_simt", arch="sm_80", dtype="fp32", head_dim=64, causal=False,
                       block_m=64, block_n=64, warps=8, stages=1, thread_m=4)


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in (os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"):
        path = Path(folder) / "bin" / name
        if folder and path.exists():
            return str(path)
    return None


NVCC = _tool("nvcc")
CMAKE = shutil.which("cmake")
need_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
need_cmake = pytest.mark.skipif(NVCC is None or CMAKE is None,
                                reason=f"needs cmake and nvcc (cmake: {CMAKE}, nvcc: {NVCC})")


def _header_value(text: str, name: str) -> str:
    match = re.search(rf"constexpr (?:const char\*|\w+) {name} = ([^;]+);", text)
    assert match, f"{name} missing from the header"
    return match.group(1).strip().strip('"')


# ------------------------------------------------------------ no tools needed
@pytest.mark.parametrize("cfg", [MMA_80, MMA_90, SIMT_80], ids=lambda c: c.name)
def test_export_writes_source_and_header(cfg, tmp_path):
    from autoflash.kernels.render import render

    done = export_kernel(cfg, tmp_path / "out")
    assert done.source == tmp_path / "out" / f"{cfg.name}.cu"
    source, header = done.source.read_text(), done.header.read_text()
    assert render(cfg) in source  # the rendered template, unchanged
    assert 'extern "C" __global__ void __launch_bounds__' in source
    variant = TEMPLATES[cfg.template]
    assert int(_header_value(header, "kSmemBytes")) == variant.smem_bytes(cfg)
    assert int(_header_value(header, "kThreads")) == cfg.threads
    assert int(_header_value(header, "kBlockM")) == cfg.block_m
    assert int(_header_value(header, "kHeadDim")) == cfg.head_dim
    assert _header_value(header, "kDtype") == cfg.dtype
    assert _header_value(header, "kName") == cfg.name
    assert _header_value(header, "kCausal") == ("true" if cfg.causal else "false")
    assert f"void {cfg.name}(" in header
    # the config is recorded, so the export can be traced back and re-rendered
    recorded = re.search(r"config: (\{.*\})", header).group(1)
    assert KernelConfig.from_dict(json.loads(recorded)) == cfg


def test_tma_template_is_refused_with_an_alternative(tmp_path):
    if "flash_fwd_wgmma" not in TEMPLATES:
        pytest.skip("flash_fwd_wgmma is not registered")
    cfg = TEMPLATES["flash_fwd_wgmma"].default("sm_90a", K("bf16", 128, False))
    assert "flash_fwd_mma" in exportable(cfg)
    with pytest.raises(ExportError, match="cannot export .*flash_fwd_mma"):
        export_kernel(cfg, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_exportable_config_falls_back_to_an_exportable_template():
    cfg, how = exportable_config("sm_90", "bf16", 128, False)
    assert exportable(cfg) is None and cfg.dtype == "bf16" and cfg.head_dim == 128 and not cfg.causal
    assert how
    cfg, _ = exportable_config("sm_80", "fp32", 64, True)
    assert cfg.template == "flash_fwd_simt" and cfg.causal


@pytest.mark.parametrize("kwargs,match", [
    (dict(arch="sm_99", dtype="bf16", head_dim=128, causal=False), "unknown arch"),
    (dict(arch="sm_90", dtype="fp8", head_dim=128, causal=False), "unknown dtype"),
    (dict(arch="sm_90", dtype="bf16", head_dim=128, causal=False, template="nope"), "unknown template"),
    (dict(arch="sm_90", dtype="bf16", head_dim=44, causal=False), "no exportable config"),
])
def test_exportable_config_errors(kwargs, match):
    with pytest.raises(ExportError, match=match):
        exportable_config(**kwargs)


def test_bad_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="block_m"):
        export_kernel(dict(MMA_80.to_dict(), block_m=100), tmp_path)


def _args(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_export_main_flags(tmp_path):
    done = export_main(_args("--arch", "sm_80", "--dtype", "fp16", "--head-dim", "64", "--causal", "yes",
                             "--template", "flash_fwd_mma", "--out", str(tmp_path)))
    assert done.config.template == "flash_fwd_mma" and done.config.causal and done.source.exists()
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(SIMT_80.to_dict()))
    done = export_main(_args("--config", str(cfg_file), "--out", str(tmp_path / "b")))
    assert done.config == SIMT_80 and done.header.exists()
    done = export_main(_args("--config", json.dumps({"config": MMA_90.to_dict()}), "--out", str(tmp_path / "c")))
    assert done.config == MMA_90
    with pytest.raises(ExportError, match="--arch"):
        export_main(_args("--out", str(tmp_path)))
    with pytest.raises(ExportError, match="JSON"):
        export_main(_args("--config", "{not json", "--out", str(tmp_path)))


# ------------------------------------------------------------------- nvcc
def _run(cmd, cwd=None, timeout=600):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return proc


@need_nvcc
@pytest.mark.parametrize("cfg,arch", [(MMA_80, "sm_80"), (MMA_80, "sm_90"), (MMA_90, "sm_90"), (SIMT_80, "sm_80")],
                         ids=lambda x: x if isinstance(x, str) else x.name)
def test_nvcc_compiles_the_export(cfg, arch, tmp_path):
    done = export_kernel(cfg, tmp_path)
    obj = tmp_path / f"{cfg.name}.o"
    proc = _run([NVCC, f"-arch={arch}", "-std=c++17", "--use_fast_math", "-c", done.source, "-o", obj])
    assert proc.returncode == 0, proc.stderr
    assert obj.stat().st_size > 0


@need_nvcc
def test_header_compiles_in_plain_cpp(tmp_path):
    """The header is plain C++ (CUDA runtime headers only): a .cpp that includes it and
    launches through it builds with the host compiler and links with the nvcc-built kernel."""
    done = export_kernel(MMA_80, tmp_path)
    host = tmp_path / "host.cpp"
    host.write_text(f'#include "{done.header.name}"\n'
                    f"namespace k = autoflash::{MMA_80.name};\n"
                    "int main() {\n"
                    "  static_assert(k::kBlockM == 128 && k::kThreads == 128, \"launch shape\");\n"
                    "  cudaError_t e = k::launch(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 1, 1, 1, 1);\n"
                    "  return e == cudaErrorInvalidValue ? 0 : 1;\n"
                    "}\n")
    exe = tmp_path / "host"
    proc = _run([NVCC, "-arch=sm_80", "-std=c++17", host, done.source, "-o", exe], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert exe.exists()


# ------------------------------------------------------------------ CMake
def _build_example(cfg: KernelConfig, tmp_path: Path, cuda_arch: str = "90") -> Path:
    export_dir, build_dir = tmp_path / "export", tmp_path / "build"
    export_kernel(cfg, export_dir)
    proc = _run([CMAKE, "-S", EXAMPLE, "-B", build_dir, f"-DAUTOFLASH_EXPORT_DIR={export_dir}",
                 f"-DCMAKE_CUDA_ARCHITECTURES={cuda_arch}", f"-DCMAKE_CUDA_COMPILER={NVCC}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"autoflash kernel: {cfg.name}" in proc.stdout
    proc = _run([CMAKE, "--build", build_dir, "-j", "4"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exe = build_dir / "autoflash_example"
    assert exe.exists()
    return exe


@need_cmake
def test_cmake_example_builds(tmp_path):
    from conftest import gpu_unavailable_reason

    exe = _build_example(MMA_90, tmp_path)
    proc = _run([exe])
    assert f"kernel {MMA_90.name} (bf16, head_dim 128" in proc.stdout
    if gpu_unavailable_reason() is not None:  # built, and says plainly that it did not run
        assert proc.returncode == 77 and "not run" in proc.stdout, proc.stdout + proc.stderr


@need_cmake
def test_cmake_example_needs_an_export_dir(tmp_path):
    proc = _run([CMAKE, "-S", EXAMPLE, "-B", tmp_path / "b", f"-DCMAKE_CUDA_COMPILER={NVCC}"])
    assert proc.returncode != 0 and "AUTOFLASH_EXPORT_DIR" in proc.stderr


@pytest.mark.gpu
@need_cmake
@pytest.mark.parametrize("cfg,argv", [
    (MMA_90, []),  # B=2, Hq=4, Hkv=2 (GQA), Nq=300, Nk=517: ragged tiles
    (MMA_80, ["1", "8", "1", "700", "300"]),  # MQA, causal with seq_q > seq_k
    (SIMT_80, ["2", "3", "3", "129", "257"]),
], ids=lambda x: x.name if isinstance(x, KernelConfig) else " ".join(x) or "default")
def test_cmake_example_runs_on_gpu(cfg, argv, tmp_path):
    exe = _build_example(cfg, tmp_path)
    proc = _run([exe, *argv])
    print(proc.stdout)
    assert proc.returncode == 0 and "PASS" in proc.stdout, proc.stdout + proc.stderr
