"""Builds the compiled hot path (detector/core/_kernel.pyx); everything else is in
pyproject.toml. Cython turns the .pyx into C; any C compiler with the Python headers
builds it."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("detector.core._kernel", ["detector/core/_kernel.pyx"], extra_compile_args=["-O2"])],
        compiler_directives={"language_level": "3"},
    )
)
