"""Where the whole pipeline's false tracked calls come from, on all-normal simulated fields.

Usage (repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/false_calls.py [--seeds 400-415] [--size 1024] [-v]

Every field is ``fishcount.simulate`` with ``abnormal_fraction=0`` (del5q panel): every scored nucleus called
del5q or monosomy5 is a false call, and their share of the scored nuclei is the clone % an all-normal
sample reads (what a lab's normal cut-off is set against). Each false call is attributed: ``unmatched
object`` (no true nucleus at IoU >= 0.5: a fragment of an over-split nucleus), or per signal it lacks, where
that true signal's detection went: ``in other nucleus`` (detected inside a touching nucleus' mask: the
boundary was drawn into this one), ``in background``, ``own merged`` (detected in this nucleus but merged
with another signal) or ``not detected``.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fishcount as fc  # noqa: E402
from detection_errors import simulate_and_analyse  # noqa: E402


def attribute(seed: int, size: int, verbose: bool = False) -> tuple[int, int, Counter]:
    """``(scored nuclei, false tracked calls, Counter of causes)`` of one all-normal field."""
    panel = fc.load_panel("del5q")
    sim, res, truth, nuc = simulate_and_analyse(panel, seed, (size, size), abnormal_fraction=0.0)
    scored = nuc[nuc.scorable]
    false = scored[scored.call.isin(panel.tracked_calls)]
    causes: Counter = Counter()
    for _, r in false.iterrows():
        if pd.isna(r.true):
            causes["unmatched object"] += 1
            if verbose:
                print(f"seed {seed} nucleus {r.label}: {r.pattern}, unmatched object ({r.area_um2:.0f} µm²)")
            continue
        t = truth.loc[int(r.true)]
        for s in panel.signal_names:
            if r[f"count_{s}"] >= t[f"count_{s}"]:
                continue
            true_spots = sim.spots[(sim.spots.label == int(r.true)) & (sim.spots.signal == s)
                                   & sim.spots.kind.isin(["signal", "split_part"])]
            found = res.spots[res.spots.signal == s]
            for a in true_spots.itertuples():
                dist = np.hypot(found.y - a.y, found.x - a.x)
                j = dist.idxmin() if len(dist) else None
                if j is None or dist[j] > 3:
                    kind = "not detected"
                elif found.loc[j, "label"] == r.label:
                    if found.loc[j, "counts_as"]:
                        continue  # this one was counted
                    kind = "own merged"
                elif found.loc[j, "label"] == 0:
                    kind = "in background"
                else:
                    kind = "in other nucleus"
                causes[kind] += 1
                if verbose:
                    print(f"seed {seed} nucleus {r.label}: {r.pattern} (true {t.pattern}), {s} {kind}"
                          f"{', lobulated' if t.lobulated else ''}{', touching' if t.touching else ''}")
    return len(scored), len(false), causes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="400-415")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("-v", action="store_true", help="one line per false call")
    a = ap.parse_args(argv)
    lo, hi = (int(x) for x in a.seeds.split("-"))
    n_scored = n_false = 0
    causes: Counter = Counter()
    for seed in range(lo, hi + 1):
        s, f, c = attribute(seed, a.size, a.v)
        n_scored, n_false = n_scored + s, n_false + f
        causes.update(c)
    print(f"{n_false} false tracked calls of {n_scored} scored nuclei ({100 * n_false / max(1, n_scored):.2f} %)")
    for k, v in causes.most_common():
        print(f"  {v:4d}  {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
