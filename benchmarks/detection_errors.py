"""List the whole pipeline's miscounted nuclei on simulated fields, with what went wrong.

Usage (repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/detection_errors.py 5 10    # seeds 5..9

For each scorable nucleus matched to a true one (IoU >= 0.5, as in bench_detection.py) whose counts differ
from the truth: the detected and the true pattern, the IoU, whether the true nucleus is lobulated /
touching / has dim or split signals, and which other true nuclei the predicted one covers (fraction of
each inside it: a merged pair shows a second nucleus at >= 0.5).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fishcount as fc  # noqa: E402
from bench_detection import match_labels  # noqa: E402
from fishcount.io import field_from_arrays  # noqa: E402


def simulate_and_analyse(panel, seed: int, shape=(1024, 1024), **sim_kw):
    """One ``fishcount.simulate`` field (``sim_kw`` to ``simulate_field``) through ``analyze_field`` with its
    pixel size: ``(sim, result, truth indexed by label, nuclei with column "true": the matched true label,
    NaN when none)``."""
    sim = fc.simulate_field(panel, shape=shape, seed=seed, **sim_kw)
    d = {n: sim.image[i] for i, n in enumerate(sim.channel_names)}
    fld = field_from_arrays(d.pop("DAPI"), d, sim.pixel_size_um, panel=panel, name=f"f{seed}")
    res = fc.analyze_field(fld, panel)
    nuc = res.nuclei.copy()
    nuc["true"] = nuc.label.map(match_labels(sim.labels, res.labels))
    return sim, res, sim.truth.set_index("label"), nuc


def errors(seeds: range, shape=(1024, 1024)) -> pd.DataFrame:
    panel = fc.load_panel("del5q")
    keys = [f"count_{s}" for s in panel.signal_names]
    rows = []
    for seed in seeds:
        sim, res, truth, nuc = simulate_and_analyse(panel, seed, shape)
        areas = np.bincount(sim.labels.ravel())
        for _, r in nuc[nuc.scorable & nuc.true.notna()].iterrows():
            t = truth.loc[int(r.true)]
            if (r[keys].to_numpy() == t[keys].to_numpy()).all():
                continue
            m = res.labels == r.label
            tm = sim.labels == int(r.true)
            ids, c = np.unique(sim.labels[m], return_counts=True)
            others = {int(i): round(float(k / areas[i]), 2) for i, k in zip(ids, c) if i and i != int(r.true)}
            rows.append(dict(seed=seed, label=int(r.label), true=int(r.true), pattern=r.pattern, true_pattern=t.pattern,
                             iou=round(float((m & tm).sum() / (m | tm).sum()), 2), lobulated=bool(t.lobulated),
                             touching=bool(t.touching), n_dim=int(t.n_dim), n_split=int(t.n_split), others=others))
    return pd.DataFrame(rows)


if __name__ == "__main__":
    lo, hi = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (0, 5)
    pd.set_option("display.width", 200)
    print(errors(range(lo, hi)).to_string())
