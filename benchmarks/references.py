"""The authors' implementations that benchmarks compare against, found outside the repository.

Their code is not part of farconv and is never committed here: a benchmark looks for a copy
under `$FARCONV_REFS` (default: the `refs` folder beside the repository, e.g.
`/work/refs/checkered-cnn`) and adds its column only when the copy is there; otherwise the
column is skipped and the report says why. Set-up, once per machine (each a plain checkout
of the authors' repository):

    git clone https://github.com/ShayanPersonal/checkered-cnn      $FARCONV_REFS/checkered-cnn
    git clone https://github.com/d-li14/octconv.pytorch            $FARCONV_REFS/octconv.pytorch
    git clone https://github.com/shrubb/box-convolutions          $FARCONV_REFS/box-convolutions
    (cd $FARCONV_REFS/box-convolutions && python setup.py build_ext --inplace)   # its C++/CUDA extension

`dcls` 0.1.1 (the DCLS authors' package) is a test dependency of farconv, installed by pip.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
SOURCES = {
    "checkered-cnn": "https://github.com/ShayanPersonal/checkered-cnn",
    "octconv.pytorch": "https://github.com/d-li14/octconv.pytorch",
    "box-convolutions": "https://github.com/shrubb/box-convolutions",
}


def references_root() -> Path:
    return Path(os.environ.get("FARCONV_REFS", REPO.parent / "refs"))


def load_reference(checkout: str, module: str) -> tuple[ModuleType | None, str]:
    """`(module, where)` of `module` (dotted, inside the checkout `checkout`) or `(None, why not)`.

    The checkout's folder goes to the front of `sys.path` only while importing, so its
    top-level names (e.g. `models`) do not shadow farconv's afterwards.
    """
    folder = references_root() / checkout
    if not folder.is_dir():
        return None, f"not installed ({folder} is absent; clone {SOURCES.get(checkout, checkout)} there)"
    saved_path, saved_modules = list(sys.path), dict(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        loaded = importlib.import_module(module)
    except Exception as error:  # a broken or incompatible checkout: skip the column, say why
        return None, f"cannot import {module} from {folder}: {type(error).__name__}: {error}"
    finally:
        sys.path[:] = saved_path
        for name, imported in list(sys.modules.items()):  # the checkout's modules leave the namespace again
            if str(getattr(imported, "__file__", None) or "").startswith(str(folder)):
                del sys.modules[name]
                if name in saved_modules:
                    sys.modules[name] = saved_modules[name]
    return loaded, str(folder)
