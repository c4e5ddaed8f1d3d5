"""Which segmentation step makes each simulated lobulated nucleus not whole / touching nucleus not split.

Usage (dev seeds only; never choose anything on the benchmark seeds 0-9)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lobe_failures.py [--seeds 100-119] [--no-pixel-size] [-v]

The classical pipeline is re-run step by step (the same calls as ``segment_classical``); after each step
the labels are taken back to the field's grid and every non-border true nucleus is checked: matched at
IoU >= 0.5 (one-to-one, greedy) or not. A failure is attributed to the first step after which the nucleus
stays unmatched to the end, with how it fails there: ``merged`` (its best object also holds >= 50 % of
another true nucleus), ``cut`` (its best object holds < 50 % of it: a lobe cut off or a fragment) or
``outline`` (neither). ``never ok (mask on)``: not matched after any step (e.g. a pair the mask joins and no step separates).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from collections import Counter

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from fishcount import segment as S  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_segment import true_nucleus_fates  # noqa: E402

STAGES = ["never ok (mask on)", "5 split", "6 merge", "6b join", "7 re-split", "7b dim", "7c outline", "7c2 level split",
          "7d concave cut", "7e own gaps"]


def _stages(dapi: np.ndarray, diameter_px: float, **params) -> list[tuple[str, np.ndarray, tuple, float]]:
    """Labels at the working scale after each step (as ``segment_classical``)."""
    p = {**S.CLASSICAL_DEFAULTS, **params}
    img = np.asarray(dapi)
    factor = float(np.clip(p["working_diameter_px"] / diameter_px, 1.0 / 16.0, 2.0))
    rng = S._norm_range(img)
    work, (fy, fx) = S._resample(img, factor)
    work, _ = S._normalize(work, rng)
    d = diameter_px * factor
    work = S._remove_debris(work, d, p)  # step 2b
    flt = S._flatten(work, d, p)
    mask, levels = S._foreground(flt, d, p["local_rel"], p["low_frac"], p["noise_sigmas"], p["own_peak_rel"],
                                 with_levels=True)
    sigma = S._texture_smoothing(flt, mask, d, p)  # step 3b
    if sigma > p["smooth_sigma_diameters"]:
        p = {**p, "smooth_sigma_diameters": sigma}
        flt = S._flatten(work, d, p)
        mask, levels = S._foreground(flt, d, p["local_rel"], p["low_frac"], p["noise_sigmas"], p["own_peak_rel"],
                                     with_levels=True)
    typical_area = math.pi * d * d / 4.0
    min_area = max(4, int(p["min_area_fraction"] * typical_area))
    mask, gaps = S._fill_holes_but_gaps(mask, flt, levels, max(1, int(round(0.1 * d))))
    mask = S._opened(mask, max(1, int(round(d / 12))), int(p["opening_keep_radius_px"]), min_area)
    mask = S._remove_small(mask, min_area)
    out = [("mask", ndi.label(mask)[0].astype(np.int32))]
    lab = S._split(mask, flt, d, p)
    out.append(("5 split", lab))
    lab = S._merge_fragments(lab, flt, d, {**p, "bridge_max_gap_diameters": 0.0})
    out.append(("6 merge", lab))
    lab = S._join_lobes(lab, flt, d, p)
    out.append(("6b join", lab))
    lab = S._refine_split(lab, flt, d, p)
    out.append(("7 re-split", lab))
    lab = S._drop_dim(lab, flt, d, p)
    out.append(("7b dim", lab))
    lab = S._tighten_outlines(lab, flt, d, p)
    out.append(("7c outline", lab))
    lab = S._level_split(lab, flt, d, p)
    out.append(("7c2 level split", lab))
    lab = S._concave_split(lab, d, p, flt)
    out.append(("7d concave cut", lab))
    lab = S._fill_own_gaps(lab, gaps)
    out.append(("7e own gaps", lab))
    return [(name, S._upsample_labels(x.copy(), img.shape, (fy, fx), min_area / (fy * fx))) for name, x in out]


def _status(true: np.ndarray, pred: np.ndarray, ids: list[int]) -> dict[int, str]:
    """'ok' / 'merged' / 'cut' / 'outline' for each true id (IoU >= 0.5 one-to-one greedy)."""
    at, mt, cover, best = true_nucleus_fates(true, pred)
    res = {}
    for t in ids:
        if t in mt:
            res[t] = "ok"
        elif t not in best or best[t][1] / at[t] < 0.5:
            res[t] = "cut"
        elif cover[best[t][0]] >= 2:
            res[t] = "merged"
        else:
            res[t] = "outline"
    return res


def diagnose(sim: dict, with_pix: bool = True, **params) -> dict[str, list]:
    true = sim["labels"]
    truth = sim["truth"].set_index("label")
    d = 9.0 / sim["pix"] if with_pix else S.estimate_nucleus_diameter(sim["dapi"].astype(np.float32))
    st = _stages(sim["dapi"], d, **params)
    at = np.bincount(true.ravel(), minlength=int(true.max()) + 1)
    ids = [int(t) for t in truth.index if not truth.loc[t, "border"] and at[t] > 0]
    per = [_status(true, lab, ids) for _, lab in st]
    fails = {"lob": [], "touch": []}
    counts = {"lob": [0, 0], "touch": [0, 0]}
    for t in ids:
        kinds = [k for k, on in (("lob", truth.loc[t, "lobulated"]), ("touch", truth.loc[t, "touching"])) if on]
        for kind in kinds:
            counts[kind][1] += 1
            counts[kind][0] += per[-1][t] == "ok"
        if per[-1][t] == "ok" or not kinds:
            continue
        j = len(per) - 1
        while j > 0 and per[j - 1][t] != "ok":
            j -= 1
        for kind in kinds:
            fails[kind].append((STAGES[j], per[j][t], int(t), [p[t] for p in per]))
    return {"fails": fails, "counts": counts}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="100-119")
    ap.add_argument("--no-pixel-size", action="store_true")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--set", action="append", default=[], help="classical parameter override, KEY=VALUE")
    a = ap.parse_args(argv)
    lo, hi = (int(x) for x in a.seeds.split("-"))
    tab = {"lob": Counter(), "touch": Counter()}
    tot = {"lob": [0, 0], "touch": [0, 0]}
    for seed in range(lo, hi + 1):
        from fishcount.simulate import simulate_field
        pix = (0.16, 0.11, 0.22)[seed % 3]  # as bench_segment.py sim
        s = simulate_field("del5q", shape=(768, 768), pixel_size_um=pix, seed=seed)
        sim = dict(dapi=s.image[0], labels=s.labels, truth=s.truth, pix=pix)
        params = {k: float(v) for k, v in (x.split("=") for x in a.set)}
        r = diagnose(sim, with_pix=not a.no_pixel_size, **params)
        for kind in tab:
            tot[kind][0] += r["counts"][kind][0]
            tot[kind][1] += r["counts"][kind][1]
            for stage, how, t, hist in r["fails"][kind]:
                tab[kind][(stage, how)] += 1
                if a.v:
                    print(f"seed {seed} {kind:5s} nucleus {t:4d}: {stage} {how}   {' '.join(h[:3] for h in hist)}")
    for kind, name in (("lob", "lobulated not whole"), ("touch", "touching not split")):
        ok, n = tot[kind]
        print(f"{name}: {n - ok} of {n} ({ok / max(n, 1):.1%} ok)")
        for (stage, how), c in sorted(tab[kind].items(), key=lambda x: -x[1]):
            print(f"   {c:4d}  {stage:12s} {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
