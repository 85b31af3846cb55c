"""The detection core uncompiled, next to the compiled one, in the same process.

``detector.core``'s hot modules are compiled from their ``.py`` files (Cython's
pure-Python mode), so the tests can hold the compiled code to the very source it was built
from: :func:`core` loads ``detector/core/*.py`` once more, uncompiled, as the package
``puredetector.core`` (its imports of ``detector.core`` rewritten to that name, nothing
else changed). A difference between the two is a compilation fault (a C type too narrow, a
division or comparison that means something else in C), not a second implementation.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

SOURCE = Path(__file__).resolve().parents[2] / "detector" / "core"
PACKAGE = "puredetector.core"


class _Loader(importlib.machinery.SourceFileLoader):
    def source_to_code(self, data: Any, path: Any, *, _optimize: int = -1) -> Any:  # type: ignore[override]
        text = bytes(data).replace(b"detector.core", PACKAGE.encode())
        return compile(text, path, "exec", dont_inherit=True)

    def get_code(self, fullname: str) -> Any:  # no bytecode cache: always the rewritten source
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname == "puredetector":
            return importlib.machinery.ModuleSpec(fullname, None, is_package=True)
        if fullname != PACKAGE and not fullname.startswith(PACKAGE + "."):
            return None
        rest = fullname[len(PACKAGE) :].lstrip(".")
        if not rest:
            init = SOURCE / "__init__.py"
            return importlib.util.spec_from_file_location(
                fullname,
                init,
                loader=_Loader(fullname, str(init)),
                submodule_search_locations=[str(SOURCE)],
            )
        file = SOURCE / f"{rest}.py"
        if not file.exists():
            return None
        return importlib.util.spec_from_file_location(
            fullname, file, loader=_Loader(fullname, str(file))
        )


class _Namespace:
    """``core().engine`` and so on: the uncompiled modules by their short names."""

    def __getattr__(self, name: str) -> ModuleType:
        return importlib.import_module(f"{PACKAGE}.{name}")


def core() -> Any:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    module = importlib.import_module(f"{PACKAGE}.engine")
    assert not (module.__file__ or "").endswith(".so"), module.__file__
    return _Namespace()


def is_compiled(module: ModuleType) -> bool:
    return (module.__file__ or "").endswith((".so", ".pyd"))
