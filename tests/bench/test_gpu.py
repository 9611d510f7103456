"""bench/gpu.sh without a GPU: it says so, prints one JSON record, writes nothing and exits 0."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_script_without_a_gpu_says_so_and_exits_0(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}  # hide any GPU: the CPU path
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), "--out", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("no GPU:") and "no CUDA device" in lines[0]
    record = json.loads(lines[-1])
    assert record["name"] == "gpu" and record["cuda"] is None and "no CUDA device" in record["skipped"]
    assert not out.exists()
