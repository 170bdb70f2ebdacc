"""Every benchmark the docs name runs (at small sizes) and prints its same-run comparison."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script, args, expect", [
    ("bench_cipher.py", ["--images", "4", "--dataset-images", "16", "--repeats", "1"], "ratio_vs_aes_ctr_block8="),
    ("bench_search.py", ["--max-n", "2000", "--queries", "10"], "faiss"),
    ("bench_protocol.py", ["--n", "60", "--chunk", "16"], "peak RSS"),
    ("bench_quant.py", ["--profile", "ci", "--repeats", "1", "--calib-images", "8"], "int8"),
    ("bench_server.py", ["--images", "64", "--clients", "2", "--queries", "5", "--distinct", "4"], "0 lost"),
])
def test_benchmark_runs(script, args, expect, weights_assets, default_dataset):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert expect in proc.stdout, proc.stdout[-2000:]
