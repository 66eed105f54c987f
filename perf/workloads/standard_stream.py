"""The standard order streams of ``../shared/workload`` generated once and cached.

``load_generator()`` imports ``gen_workload`` from ``<repo>/../shared/workload`` when it exists (CI
keeps ``shared/`` beside the repo) and otherwise the vendored copy in this package, so both give
the same bytes for the same arguments. ``standard_stream(ops, markets, seed, accounts)`` returns the
ORDER array, cached as ``.npy`` under ``$HX_CACHE_DIR`` or ``<repo>/var/workloads``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_GENERATOR = REPO_ROOT.parent / "shared" / "workload" / "gen_workload.py"
VENDORED_GENERATOR = Path(__file__).with_name("gen_workload.py")


def load_generator() -> ModuleType:
    path = SHARED_GENERATOR if SHARED_GENERATOR.is_file() else VENDORED_GENERATOR
    spec = importlib.util.spec_from_file_location("hx_gen_workload", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cache_dir() -> Path:
    return Path(os.environ.get("HX_CACHE_DIR", REPO_ROOT / "var" / "workloads"))


def standard_stream(
    ops: int = 1_000_000, markets: int = 1, seed: int = 1, accounts: int = 0, cache: bool = True
) -> np.ndarray:
    """The generator's stream for these arguments (cached on disk when ``cache``)."""
    path = cache_dir() / f"orders-ops{ops}-m{markets}-s{seed}-a{accounts}.npy"
    if cache and path.is_file():
        return np.load(path)
    orders = load_generator().generate(ops, markets, seed, accounts)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, orders)
        os.replace(tmp, path)
    return orders
