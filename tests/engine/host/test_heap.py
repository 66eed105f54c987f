"""``keep_freed_memory``: column-sized numpy temporaries stop faulting in fresh pages."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import resource, sys
import numpy as np
from engine.host.heap import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
col = np.arange(100_000, dtype=np.int64)
(col * 2).astype(np.float64)  # warm: the first temporaries fault in whatever they get
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    (col * 2).astype(np.float64)  # two 800 KB temporaries, freed at once
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, timeout=60
    )
    return int(out.stdout.strip())


def test_freed_column_temporaries_are_reused_not_faulted_in_again() -> None:
    kept, default = _faults("keep"), _faults("default")
    # by default each 800 KB temporary is fresh pages (~200 faults); kept, the heap reuses them
    assert default > 50 * 100 and kept < default // 20, (kept, default)
