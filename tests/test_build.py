"""The compiled extensions build without OpenMP and libmvec too (serial, scalar exp) and say so."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.build

ROOT = Path(__file__).resolve().parents[1]


def _build_copy(tmp_path, **env_vars):
    """The project copied to tmp_path and its extensions built there, with env_vars set."""
    pytest.importorskip("Cython")
    for item in ("setup.py", "pyproject.toml", "README.md", "csrc", "fastmlp"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    for so in (tmp_path / "fastmlp").rglob("*.so"):
        so.unlink()
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp_path,
                           env=dict(os.environ, **env_vars), capture_output=True, text=True,
                           timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    return build


def test_build_without_openmp_reports_it(tmp_path):
    build = _build_copy(tmp_path, FASTMLP_NO_OPENMP="1", FASTMLP_NO_LIBMVEC="1")
    assert "building with OpenMP=no" in build.stderr and "libmvec=no" in build.stderr
    probe = ("import numpy as np, fastmlp; from fastmlp import _build_info; "
             "print(_build_info.openmp_enabled(), _build_info.libmvec_enabled(), "
             "fastmlp.get_backend('cython').name)")
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "False", "cython"]


_PHASES_PROBE = """
import json, warnings, numpy as np
from sklearn.datasets import load_digits
from fastmlp import MLPClassifier, _build_info
from fastmlp.backends import _cython_kernels as ck
warnings.simplefilter("ignore")
X, y = load_digits(return_X_y=True)
ck.phase_times(2)
MLPClassifier(max_iter=3, random_state=0, backend="cython", n_threads=2).fit(X / 16, y)
print(json.dumps([_build_info.phase_timers_enabled(), list(ck.PHASES), ck.phase_times(2),
                  ck.phase_times(2)]))
"""


def test_phase_timers_build_times_every_phase(tmp_path):
    from fastmlp import _build_info
    from fastmlp.backends import _cython_kernels

    assert not _build_info.phase_timers_enabled()  # the default build has none
    assert not any(map(any, _cython_kernels.phase_times(2)))
    build = _build_copy(tmp_path, FASTMLP_PHASE_TIMERS="1")
    if "OpenMP=no" in build.stderr:
        pytest.skip("the timers need OpenMP, which this compiler lacks")
    assert "phase timers" in build.stderr
    run = subprocess.run([sys.executable, "-c", _PHASES_PROBE], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    enabled, names, times, after_reset = json.loads(run.stdout)
    assert enabled
    phase = {name: [row[k] for row in times] for k, name in enumerate(names)}
    for tid in range(2):  # a split digits minibatch: both threads ran every phase
        assert 0 < phase["gemm"][tid] < phase["forward_backward"][tid] < phase["epoch"][tid]
        parts = sum(phase[name][tid] for name in names if name not in ("gemm", "epoch"))
        assert parts <= phase["epoch"][tid] * 1.001
    assert not any(map(any, after_reset))


_INSTALLED_PROBE = """
import json, numpy as np, fastmlp
from fastmlp.show import config
c = config()
est = fastmlp.MLPClassifier((4,), max_iter=2, backend="numpy").fit(np.eye(4), [0, 1, 0, 1])
print(json.dumps([fastmlp.__file__, c["compiled_extension"], c["compiled_for"],
                  c["backends"], c["auto_backend"], est.n_iter_]))
"""


def _wheel_installed(tmp_path, **env_vars):
    """A wheel of the project built as `pip wheel` builds one (isolated build environment),
    installed into a directory of its own; (build log, the installed config)."""
    source = tmp_path / "src"
    source.mkdir()
    for item in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "csrc", "fastmlp"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, source / item)
    for so in (source / "fastmlp").rglob("*.so"):
        so.unlink()
    env = dict(os.environ, **env_vars)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w",
                            str(tmp_path / "wheels"), str(source)], env=env,
                           capture_output=True, text=True, timeout=1200)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("fastmlp-*.whl")
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target",
                              str(target), str(wheel)], capture_output=True, text=True,
                             timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    # -S: no site hooks, so the editable install of this checkout cannot answer imports;
    # the installed wheel first, then the dependencies
    import sysconfig

    path = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"],
                            sysconfig.get_paths()["platlib"]])
    run = subprocess.run([sys.executable, "-S", "-c", _INSTALLED_PROBE], cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=path), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    where, *facts = json.loads(run.stdout)
    assert where.startswith(str(target))
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        compiled = [n for n in z.namelist() if n.endswith((".so", ".pyd"))]
    return build.stdout + build.stderr, compiled, facts


def test_install_without_a_c_compiler_has_the_numba_and_numpy_backends(tmp_path):
    log, compiled, facts = _wheel_installed(tmp_path, CC="/no/such/cc")
    assert "no working C compiler" in log and compiled == []
    extension, target, backends, auto, n_iter = facts
    assert not extension and target.startswith("not built")
    assert sorted(backends) == ["numba", "numpy"] and auto == "numba" and n_iter == 2


def test_a_wheel_is_built_for_any_cpu_of_the_architecture(tmp_path):
    log, compiled, facts = _wheel_installed(tmp_path)
    assert "-march=native=no" in log and len(compiled) == 4
    extension, target, backends, auto, _ = facts
    assert extension and target == "portable" and "cython" in backends and auto == "cython"
