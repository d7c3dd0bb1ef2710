"""A tiny DRF run alone and beside a CPU-bound competitor, with drf's default settings and with spinning OpenMP
threads (the behaviour before drf asked for passive waiting): seconds per step and the slow-down ratios.

The competitor is another torch process with its own default threads, as a second job on the machine would be.
Run it on an otherwise idle machine; it prints one line per setting and ends with the headline ratio.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = 8
COMPETITOR = """
import torch
a = torch.randn(512, 512)
while True:
    a = torch.tanh(a @ a.T / 512)
"""


def seconds_per_step(env: dict[str, str], out: Path, name: str) -> float:
    """Median ``time/step`` of a tiny DRF run (its first step, which warms caches, left out)."""
    command = [
        sys.executable, "-m", "drf", "train", str(ROOT / "configs" / "tiny_drf.yaml"), "--set", f"name={name}",
        "--set", f"logging.output_dir={out}", "--set", f"drf.steps={STEPS}", "--set", "logging.sample_every=0",
        "--set", "logging.report=false", "--set", "drf.export=false", "--set", "drf.checkpoint_every=0",
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    records = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["time/step"] for r in records if r.get("step", 0) > 1 and "time/step" in r)


def main() -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    settings = {"drf defaults (passive waiting)": base, "spinning OpenMP threads": {**base, "OMP_WAIT_POLICY": "ACTIVE"}}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, env in settings.items():
            alone = seconds_per_step(env, Path(tmp), f"alone-{len(results)}")
            competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=base)
            try:
                time.sleep(2)
                shared = seconds_per_step(env, Path(tmp), f"shared-{len(results)}")
            finally:
                competitor.kill()
                competitor.wait()
            results[label] = shared / alone
            print(f"{label:<32} alone {alone:.3f} s/step, beside a competitor {shared:.3f} s/step "
                  f"({shared / alone:.2f}x)", flush=True)  # fmt: skip
    print(f"slow-down beside a competitor with drf defaults: {results['drf defaults (passive waiting)']:.2f}x "
          f"(spinning threads: {results['spinning OpenMP threads']:.2f}x)")


if __name__ == "__main__":
    main()
