"""bench_segment.py sim on the simulated DEV seeds (default 100-123), for choosing parameters.

    .venv/bin/python benchmarks/sim_dev.py [--seeds 100-123] [--set KEY=VALUE ...]

Same fields, pixel sizes and scoring as ``bench_segment.py sim`` (which uses the benchmark seeds 0-5);
``--set`` overrides a classical default for this run.
"""
from __future__ import annotations

import argparse
import os
import sys

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_segment import evaluate_sim  # noqa: E402

from fishcount import segment as S  # noqa: E402
from fishcount.simulate import simulate_field  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="100-123")
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args(argv)
    for k, v in (x.split("=") for x in a.set):
        S.CLASSICAL_DEFAULTS[k] = float(v)
    lo, hi = (int(x) for x in a.seeds.split("-"))
    tot = {True: {}, False: {}}
    for seed in range(lo, hi + 1):
        pix = (0.16, 0.11, 0.22)[seed % 3]
        sim = simulate_field("del5q", shape=(768, 768), pixel_size_um=pix, seed=seed)
        for with_pix in (True, False):
            m = evaluate_sim(sim, S.segment_nuclei(sim.image[0], pixel_size_um=pix if with_pix else None))
            for k in ("tp", "fp", "fn", "lob_whole", "lob_total", "touch_split", "touch_total"):
                tot[with_pix][k] = tot[with_pix].get(k, 0) + m[k]
    for with_pix, t in tot.items():
        f1 = 2 * t["tp"] / max(1, 2 * t["tp"] + t["fp"] + t["fn"])
        print(f"seeds {lo}-{hi} {'pixel size' if with_pix else 'no pixel size'}: F1 {f1:.3f} (TP {t['tp']} FP {t['fp']} "
              f"FN {t['fn']}), lobulated whole {t['lob_whole']}/{t['lob_total']} = {t['lob_whole'] / max(1, t['lob_total']):.1%}, "
              f"touching split {t['touch_split']}/{t['touch_total']} = {t['touch_split'] / max(1, t['touch_total']):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
