"""What the model identity costs: fingerprinting the bundled models' de-quantised weights, the first
time (every file hashed in full) against repeat runs (stat + safetensors headers + one memo lookup).

    python bench/model_fingerprint.py                      # smollm2-135m-instruct
    python bench/model_fingerprint.py --models smollm2-135m-instruct,gemma3-270m --repeats 5

The first hash is the peer measured in the same run; both read the files through the page cache if
they are in it, so the first time is a lower bound of a cold read.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from capeval.models import bundled
from capeval.models.fingerprint import HashMemo, local_identity


def bench(name: str, repeats: int) -> None:
    folder = bundled.ensure_weights(name)
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        memo_path = Path(tmp) / "file-hashes.sqlite"
        memo = HashMemo(memo_path)
        started = time.perf_counter()
        first = local_identity(folder, memo=memo)
        t_first = time.perf_counter() - started
        times = []
        for _ in range(repeats):
            fresh = HashMemo(memo_path)  # a new process: nothing in memory, the memo file on disk
            started = time.perf_counter()
            again = local_identity(folder, memo=fresh)
            times.append(time.perf_counter() - started)
            assert again.version == first.version and fresh.hashed == 0
            fresh.close()
    t_repeat = statistics.median(times)
    print(
        f"{name}: {len(first.files)} files, {size / 1e6:.0f} MB  first (full hash) {t_first:.3f}s  "
        f"repeat (median of {repeats}) {t_repeat * 1000:.1f} ms  ratio {t_first / t_repeat:.0f}x  "
        f"fingerprint {first.version}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for name in args.models.split(","):
        bench(name, args.repeats)


if __name__ == "__main__":
    main()
