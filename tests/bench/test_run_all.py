"""make bench (bench.run_all) regenerates every benchmark record in bench/results/, one process at a time."""

import json
import sys

from bench import run_all
from bench.common import RESULTS


def test_every_record_was_written_by_a_benchmark_that_make_bench_runs():
    for path in sorted(RESULTS.glob("*.json")):
        command = json.loads(path.read_text()).get("command") or ""
        assert command.startswith(("python -m bench.", "python bench/")), f"{path.name}: no benchmark command wrote it"
        assert path.stem in run_all.RECORDS or path.stem == "gpu", f"{path.name}: make bench does not regenerate it"


def test_commands_write_their_own_record_file(tmp_path):
    for name in run_all.RECORDS:
        command = run_all.command_for(name, full=True, out_dir=tmp_path)
        assert command[0] == sys.executable
        assert command[command.index("--out") + 1] == str(tmp_path / f"{name}.json")
    peer16 = run_all.command_for("diffusers_peer_16", full=False, out_dir=tmp_path)
    assert peer16[1:5] == ["-m", "bench.diffusers_peer", "--resolution", "16"] and "--quick" in peer16
