"""Builds the Cython sources in csrc/ into extensions inside the fastmlp package.

OpenMP is used when the compiler accepts it; otherwise the extensions are built serial
and `fastmlp.show_config()` says so. Without a working C compiler (or with
FASTMLP_NO_EXTENSIONS=1) nothing is compiled: fastmlp installs with its numba and numpy
backends, and the build says so.

Where the build runs decides the CPU it targets. A local build — `pip install -e .`,
`setup.py build_ext --inplace` — is for this machine: `-march=native`. A wheel — `python -m
build`, `pip wheel`, and `pip install .`, which builds one — may be copied to another
machine, so it targets the architecture's baseline (x86-64: SSE2) unless FASTMLP_NATIVE=1;
FASTMLP_PORTABLE=1 makes any build portable.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
# glibc's vector math library: with exp declared SIMD-callable (as glibc's own math.h does
# under -ffast-math) gcc vectorises loops that call it (the softmax's exp, the loss's log).
LIBMVEC_PROBE = """#include <math.h>
float expf(float) __attribute__((simd("notinbranch")));
double exp(double) __attribute__((simd("notinbranch")));
float logf(float) __attribute__((simd("notinbranch")));
double log(double) __attribute__((simd("notinbranch")));
float x[64];
double y[64];
int main(void) {
    for (int i = 0; i < 64; i++) { x[i] = logf(expf(x[i]) + 1.0f); y[i] = log(exp(y[i]) + 1.0); }
    return x[0] > 0.69f && x[0] < 0.7f && y[0] > 0.69 && y[0] < 0.7 ? 0 : 1;
}
"""


def compiler_builds(compiler, source_text, compile_flags, link_flags):
    """True if the compiler compiles, links and runs `source_text` with these flags."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(source_text)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_flags)
            compiler.link_executable(objects, "probe", output_dir=tmp,
                                     extra_postargs=link_flags)
            return subprocess.run([os.path.join(tmp, "probe")]).returncode == 0
        except Exception:
            return False


def compiler_accepts(compiler, flag):
    """True if the compiler builds and runs a trivial program with `flag`."""
    return compiler_builds(compiler, "int main(void) { return 0; }\n", [flag], [flag])


def compiler_has_libmvec(compiler, flags):
    """gcc + glibc's libmvec on x86-64 (vectorised exp); FASTMLP_NO_LIBMVEC=1 turns it off."""
    if os.environ.get("FASTMLP_NO_LIBMVEC") or compiler.compiler_type == "msvc":
        return False
    return compiler_builds(compiler, LIBMVEC_PROBE, ["-O3", "-fno-math-errno", "-Werror", *flags],
                           ["-lmvec", "-lm"])


def compiler_has_openmp(compiler):
    """Compile, link and run a tiny OpenMP program; True if the toolchain supports it."""
    if os.environ.get("FASTMLP_NO_OPENMP"):
        return False
    flag = "/openmp" if compiler.compiler_type == "msvc" else "-fopenmp"
    return compiler_builds(compiler, OPENMP_PROBE, [flag], [flag])


def targets_this_machine(distribution):
    """-march=native only for a build that stays where it is built (not a wheel)."""
    if os.environ.get("FASTMLP_PORTABLE"):
        return False
    return bool(os.environ.get("FASTMLP_NATIVE")) or "bdist_wheel" not in distribution.commands


class BuildExt(build_ext):
    def build_extensions(self):
        if os.environ.get("FASTMLP_NO_EXTENSIONS") or not compiler_builds(
                self.compiler, "int main(void) { return 0; }\n", [], []):
            print("fastmlp: no working C compiler (or FASTMLP_NO_EXTENSIONS=1): building "
                  "without the compiled extensions; the numba and numpy backends work, the "
                  "cython backend is not available (fastmlp config shows it)", file=sys.stderr)
            self.extensions = []
            return
        use_openmp = compiler_has_openmp(self.compiler)
        msvc = self.compiler.compiler_type == "msvc"
        # Built on the machine that runs it: let the compiler use its vector units, as
        # Numba does; a wheel targets any CPU of the architecture (the module docstring).
        native = (not msvc and targets_this_machine(self.distribution)
                  and compiler_accepts(self.compiler, "-march=native"))
        libmvec = compiler_has_libmvec(self.compiler, ["-march=native"] if native else [])
        # A developer's option: the cython kernel times its phases (bench/phases.py reads them)
        timers = bool(os.environ.get("FASTMLP_PHASE_TIMERS")) and use_openmp
        for ext in self.extensions:
            # -fno-math-errno: sqrt/exp/log need not set errno (nothing reads it), so gcc
            # inlines sqrt and vectorises the Adam update; results are unchanged (IEEE).
            ext.extra_compile_args += ["/O2"] if msvc else ["-O3", "-fno-math-errno"]
            if native:
                ext.extra_compile_args.append("-march=native")
            ext.define_macros.append(("FASTMLP_LIBMVEC", "1" if libmvec else "0"))
            if libmvec:
                ext.extra_link_args += ["-lmvec", "-lm"]
            if use_openmp:
                ext.extra_compile_args.append("/openmp" if msvc else "-fopenmp")
                if not msvc:
                    ext.extra_link_args.append("-fopenmp")
            ext.define_macros.append(("FASTMLP_OPENMP", "1" if use_openmp else "0"))
            ext.define_macros.append(("FASTMLP_PHASE_TIMERS", "1" if timers else "0"))
            ext.define_macros.append(("FASTMLP_NATIVE", "1" if native else "0"))
        print(f"fastmlp: building with OpenMP={'yes' if use_openmp else 'no'}, "
              f"-march=native={'yes' if native else 'no'}, "
              f"libmvec={'yes' if libmvec else 'no'}"
              f"{', phase timers' if timers else ''}", file=sys.stderr)
        super().build_extensions()


def extension(module, source):
    return Extension(
        module,
        [source],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )


setup(
    ext_modules=cythonize(
        [extension("fastmlp._build_info", "csrc/_build_info.pyx"),
         extension("fastmlp._shuffle", "csrc/_shuffle.pyx"),
         extension("fastmlp._sigint", "csrc/_sigint.pyx"),
         # the cython twin sits beside the numba twin, with the interface's C declarations
         extension("fastmlp.backends._cython_kernels", "fastmlp/backends/_cython_kernels.pyx")],
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False,
                             "cdivision": True},
    ),
    cmdclass={"build_ext": BuildExt},
)
