"""Builds the compiled modules of the detection core; everything else is in pyproject.toml.

Each module is plain Python (``detector/core/<name>.py``, what people read and what the
tests also run uncompiled) with its C types in ``<name>.pxd`` (Cython's pure-Python mode).
Cython turns them into C; any C compiler with the Python headers builds them.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

#: The hot path, in import order. ``-ffp-contract=off``: no fused multiply-add, so that the
#: floating-point results are the same as River's (ADWIN) and as the uncompiled modules'.
COMPILED = (
    "values",
    "jsonscan",
    "events",
    "detectors",
    "trackers",
    "performance",
    "estimation",
    "engine",
)

DIRECTIVES = {
    "language_level": "3",
    "boundscheck": False,  # indices are in range by construction and by the state checker
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": False,  # Python's division: int / int stays true division, x / 0 raises
    "annotation_typing": False,  # the .pxd files hold the C types, annotations are for mypy
}

setup(
    ext_modules=cythonize(
        [
            Extension(
                f"detector.core.{name}",
                [f"detector/core/{name}.py"],
                extra_compile_args=["-O2", "-ffp-contract=off"],
            )
            for name in COMPILED
        ],
        compiler_directives=DIRECTIVES,
    )
)
