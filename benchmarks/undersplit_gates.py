"""Why under-split objects stay merged: would the TRUE partition pass step 7c2's validity gates?

Usage (repository root, one core, ~1 min)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/undersplit_gates.py dsb          # the 40 DSB2018 dev images
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/undersplit_gates.py sim [--seeds 100-123]   # dev seeds only

Every final object that holds >= 50 % of two or more true nuclei is taken at the working scale, its
pixels are given to the nearest of those true nuclei (the oracle partition), and the gates of the level
split (step 7c2, ``fishcount.segment._level_split``) are evaluated on that partition with the defaults:

* ``area``: the object is below ``level_split_min_area`` nucleus areas (the concavity route is not tried);
* ``convex``: its solidity is at least ``concave_max_solidity`` (not a candidate at all);
* ``partsol``: a part's solidity is below ``level_split_part_solidity``;
* ``gain``: the parts' area-weighted solidity is more than ``-level_split_min_solidity_gain`` below the whole's;
* ``ends``: a boundary between two parts does not end, at both ends, within ``level_split_concavity_reach``
  x d of an outline concavity ``level_split_concavity_depth`` x d deep.

Also printed: how many objects have two or more outline concavities at all, and the seam ratio (mean of the
flattened DAPI on the true boundary / median of the dimmer part): below 1 a dark seam separates the nuclei,
above 1 the boundary is brighter than the dimmer nucleus (overlap).
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_segment import DATA  # noqa: E402

from fishcount import segment as S  # noqa: E402


def _working(img: np.ndarray, diameter_px: float, p: dict) -> tuple[np.ndarray, float, tuple[float, float]]:
    """The flattened working image, the working diameter and the scale factors (as segment_classical)."""
    factor = float(np.clip(p["working_diameter_px"] / diameter_px, 1.0 / 16.0, 2.0))
    work, scale = S._resample(img, factor)
    work, _ = S._normalize(work, S._norm_range(img))
    d = diameter_px * factor
    work = S._remove_debris(work, d, p)  # step 2b
    return S._flatten(work, d, p), d, scale


def _to_grid(labels: np.ndarray, shape: tuple[int, int], scale: tuple[float, float]) -> np.ndarray:
    """Nearest-neighbour sample of full-resolution labels at the working grid's pixel centres."""
    yy = np.minimum((np.arange(shape[0]) + 0.5) / scale[0], labels.shape[0] - 1).astype(int)
    xx = np.minimum((np.arange(shape[1]) + 0.5) / scale[1], labels.shape[1] - 1).astype(int)
    return labels[np.ix_(yy, xx)].astype(np.int64)


def gate_rows(img: np.ndarray, true: np.ndarray, pred: np.ndarray, diameter_px: float) -> list[dict]:
    """One row per under-split object of ``pred``: the gates its oracle partition fails, and its seam."""
    p = S.CLASSICAL_DEFAULTS
    flt, d, scale = _working(img, diameter_px, p)
    tw, fw = _to_grid(true, flt.shape, scale), _to_grid(pred, flt.shape, scale)
    at = np.bincount(tw.ravel())
    fa = np.bincount(fw.ravel())[1:]
    nucleus_area = max(math.pi * d * d / 4.0, float(np.median(fa[fa > 0])) if np.count_nonzero(fa) >= 5 else 0.0)
    cross = ndi.generate_binary_structure(2, 1)
    rows = []
    for o, sl in enumerate(ndi.find_objects(fw), start=1):
        if sl is None:
            continue
        sl = (slice(max(0, sl[0].start - 2), sl[0].stop + 2), slice(max(0, sl[1].start - 2), sl[1].stop + 2))
        m = fw[sl] == o
        tp = np.where(m, tw[sl], 0)
        ids, cnt = np.unique(tp[m], return_counts=True)
        main = [int(a) for a, c in zip(ids, cnt) if a > 0 and c >= 0.5 * at[a]]
        if len(main) < 2:
            continue
        idx = ndi.distance_transform_edt(~np.isin(tp, main), return_distances=False, return_indices=True)
        parts = np.where(m, tp[idx[0], idx[1]], 0)
        sol = S._solidity(m)
        pa = np.array([np.sum(parts == q) for q in main], float)
        ps = np.array([S._solidity(parts == q) for q in main])
        w = float(np.sum(pa * ps) / pa.sum())
        cv = S._outline_concavities(m, p["level_split_concavity_depth"] * d)
        gates = []
        if m.sum() < p["level_split_min_area"] * nucleus_area:
            gates.append("area")
        if sol >= p["concave_max_solidity"]:
            gates.append("convex")
        if ps.min() < p["level_split_part_solidity"]:
            gates.append("partsol")
        if w - sol < p["level_split_min_solidity_gain"]:
            gates.append("gain")
        if not S._boundaries_end_in_concavities(m, parts, cv, p["level_split_concavity_reach"] * d):
            gates.append("ends")
        bnd = np.zeros_like(m)
        for q in main:
            pq = parts == q
            bnd |= pq & S._binary_morph(m & ~pq & (parts > 0), cross)
        fv = flt[sl]
        dim = min(float(np.median(fv[parts == q])) for q in main)
        seam = float(np.mean(fv[bnd]) / dim) if bnd.any() and dim > 0 else float("nan")
        # the darkest value within 2 px of each boundary pixel (annotated boundaries are off by a pixel or two)
        low = ndi.minimum_filter(np.where(m, fv, np.inf), size=5)
        seam_min = float(np.mean(low[bnd]) / dim) if bnd.any() and dim > 0 else float("nan")
        rows.append(dict(n_true=len(main), gates=gates, concavities=len(cv), seam=seam, seam_min=seam_min))
    return rows


def report(rows: list[dict], what: str) -> None:
    c = Counter(" ".join(r["gates"]) or "passes every gate" for r in rows)
    print(f"{what}: {len(rows)} under-split objects (holding >= 50 % of two or more true nuclei)")
    for k, v in c.most_common():
        print(f"  {v:4d}  {k}")
    n = len(rows)
    if n:
        print(f"  fail 'ends': {sum('ends' in r['gates'] for r in rows)}; two or more outline concavities: "
              f"{sum(r['concavities'] >= 2 for r in rows)} of {n}")
        seams = np.array([r["seam"] for r in rows])
        print(f"  seam ratio (true boundary / dimmer part) quantiles 10/25/50/75/90 %: "
              f"{np.round(np.nanquantile(seams, [0.1, 0.25, 0.5, 0.75, 0.9]), 2).tolist()}")
        lows = np.array([r["seam_min"] for r in rows])
        print(f"  the same with the darkest value within 2 px of the boundary: "
              f"{np.round(np.nanquantile(lows, [0.1, 0.25, 0.5, 0.75, 0.9]), 2).tolist()}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("dsb", "sim"))
    ap.add_argument("--seeds", default="100-123")
    a = ap.parse_args(argv)
    rows = []
    if a.what == "dsb":
        root = DATA / "dsb2018_fluo_dev"
        with open(root / "manifest.csv") as fh:
            ids = [r["id"] for r in csv.DictReader(fh)]
        for i in ids:
            img = tifffile.imread(root / "images" / f"{i}.tif")
            gt = tifffile.imread(root / "masks" / f"{i}.tif")
            seg = S.segment_nuclei(img)
            rows += gate_rows(S._as_2d_float(img, i), gt, seg.labels, seg.diameter_px)
    else:
        from fishcount.simulate import simulate_field

        lo, hi = (int(x) for x in a.seeds.split("-"))
        for seed in range(lo, hi + 1):
            pix = (0.16, 0.11, 0.22)[seed % 3]  # as bench_segment.py sim
            sim = simulate_field("del5q", shape=(768, 768), pixel_size_um=pix, seed=seed)
            seg = S.segment_nuclei(sim.image[0], pixel_size_um=pix)
            rows += gate_rows(sim.image[0], sim.labels, seg.labels, seg.diameter_px)
    report(rows, a.what)
    return 0


if __name__ == "__main__":
    sys.exit(main())
