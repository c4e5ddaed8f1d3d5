"""Benchmark of fishcount nucleus segmentation (issue 3).

Usage (single-threaded, as reported in docs/benchmarks.md)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_segment.py all
    .venv/bin/python benchmarks/bench_segment.py dsb [--verbose]   # DSB2018 dev set, pooled F1 @ IoU 0.5
    .venv/bin/python benchmarks/bench_segment.py dsb --zoom 1.5    # the same nuclei at another magnification
    .venv/bin/python benchmarks/bench_segment.py stardist          # StarDist 2-D sample image
    .venv/bin/python benchmarks/bench_segment.py sim               # simulated marrow fields (fishcount.simulate)
    .venv/bin/python benchmarks/bench_segment.py speed             # s/MP on 1024^2 and 2048^2 fields
    .venv/bin/python benchmarks/bench_segment.py figures           # docs/img/segmentation_*.png

All runs use the defaults of ``fishcount.segment_nuclei`` (the ones the CLI uses) and no pixel size for the
real images (they have none).
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from fishcount.segment import match_labels, segment_nuclei  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _pooled(rows: list[dict]) -> dict:
    tp = sum(r["tp"] for r in rows)
    fp = sum(r["fp"] for r in rows)
    fn = sum(r["fn"] for r in rows)
    ious = [r["mean_iou"] * r["tp"] for r in rows if r["tp"]]
    return {"tp": tp, "fp": fp, "fn": fn, "f1": 2 * tp / max(1, 2 * tp + fp + fn),
            "mean_iou": sum(ious) / max(1, tp)}


def _greedy_matches(ti: np.ndarray, pi: np.ndarray, iou: np.ndarray) -> tuple[set[int], set[int]]:
    """True and predicted labels matched one-to-one at IoU >= 0.5, greedily by IoU (as ``match_labels``)."""
    mt: set[int] = set()
    mp: set[int] = set()
    for j in np.argsort(-iou):
        if iou[j] < 0.5:
            break
        if ti[j] in mt or pi[j] in mp:
            continue
        mt.add(int(ti[j]))
        mp.add(int(pi[j]))
    return mt, mp


def true_nucleus_fates(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, set[int], np.ndarray, dict]:
    """What became of each true nucleus: ``(at, matched, cover, best)``.

    ``at``: true areas (index = label); ``matched``: true labels matched at IoU >= 0.5 (one-to-one greedy, as
    ``match_labels``); ``cover[p]``: how many true nuclei have >= 50 % of their area in predicted object p;
    ``best[t] = (p, overlap px)``: the predicted object holding most of true nucleus t (absent: none).
    """
    true, pred = true.astype(np.int64), pred.astype(np.int64)
    nt, npd = int(true.max()), int(pred.max())
    sel = (true > 0) & (pred > 0)
    k, c = np.unique(true[sel] * (npd + 1) + pred[sel], return_counts=True)
    ti, pi = k // (npd + 1), k % (npd + 1)
    at = np.bincount(true.ravel(), minlength=nt + 1)
    ap = np.bincount(pred.ravel(), minlength=npd + 1)
    iou = c / (at[ti] + ap[pi] - c)
    mt, _ = _greedy_matches(ti, pi, iou)
    cover = np.bincount(pi[c / at[ti] >= 0.5], minlength=npd + 1)
    best: dict[int, tuple[int, int]] = {}
    for t, p_, o in zip(ti, pi, c):
        if int(t) not in best or o > best[int(t)][1]:
            best[int(t)] = (int(p_), int(o))
    return at, mt, cover, best


def fn_breakdown(true: np.ndarray, pred: np.ndarray) -> dict:
    """Why true nuclei are missed (IoU >= 0.5 one-to-one greedy matching, as ``match_labels``).

    ``under``: >= 50 % of the true nucleus lies in one predicted object that also holds >= 50 % of another
    true nucleus (under-split); ``missed``: no predicted pixel on it; ``other``: split or poorly outlined.
    """
    at, mt, cover, best = true_nucleus_fates(true, pred)
    nt = at.size - 1
    out = {"under": 0, "missed": 0, "other": 0}
    for t in range(1, nt + 1):
        if at[t] == 0 or t in mt:
            continue
        if t not in best:
            out["missed"] += 1
        elif cover[best[t][0]] >= 2 and best[t][1] / at[t] >= 0.5:
            out["under"] += 1
        else:
            out["other"] += 1
    return out


def fp_breakdown(true: np.ndarray, pred: np.ndarray) -> dict:
    """Why predicted objects are unmatched (IoU >= 0.5 one-to-one greedy matching, as ``match_labels``).

    ``empty``: less than 30 % of the object lies on true nuclei (haze, texture, debris the annotation leaves
    out); ``overlap``: the rest (an under-split object holding several true nuclei, a fragment, a poor
    outline).
    """
    true, pred = true.astype(np.int64), pred.astype(np.int64)
    nt, npd = int(true.max()), int(pred.max())
    sel = (true > 0) & (pred > 0)
    k, c = np.unique(pred[sel] * (nt + 1) + true[sel], return_counts=True)
    pi, ti = k // (nt + 1), k % (nt + 1)
    at = np.bincount(true.ravel(), minlength=nt + 1)
    ap = np.bincount(pred.ravel(), minlength=npd + 1)
    iou = c / (at[ti] + ap[pi] - c)
    mt, mp = _greedy_matches(ti, pi, iou)
    on_true = np.bincount(pred.ravel(), weights=(true.ravel() > 0), minlength=npd + 1)
    out = {"empty": 0, "overlap": 0}
    for q in range(1, npd + 1):
        if ap[q] == 0 or q in mp:
            continue
        out["empty" if on_true[q] < 0.3 * ap[q] else "overlap"] += 1
    return out


def bench_dsb(verbose: bool = False, zoom: float = 1.0, max_mp: float = 8.0, size_check: bool = True,
              transform=None, label: str = "") -> dict:
    """DSB2018 dev set, no pixel size. ``zoom`` != 1: every image resampled (bilinear; its masks nearest
    neighbour) by that factor first, images that would exceed ``max_mp`` megapixels skipped: the same
    nuclei imaged at another magnification. ``transform(image, masks) -> (image, masks)``: another change
    of the images (``bench_conditions.py``), named ``label`` in the summary line."""
    root = DATA / "dsb2018_fluo_dev"
    with open(root / "manifest.csv") as fh:
        ids = [r["id"] for r in csv.DictReader(fh)]
    rows = []
    t_total = 0.0
    for i in ids:
        img = tifffile.imread(root / "images" / f"{i}.tif")
        gt = tifffile.imread(root / "masks" / f"{i}.tif")
        if zoom != 1.0:
            if img.shape[0] * img.shape[1] * zoom * zoom > max_mp * 1e6:
                continue
            img = ndi.zoom(img.astype(np.float32), zoom, order=1)
            gt = ndi.zoom(gt, zoom, order=0)
        if transform is not None:
            img, gt = transform(img, gt)
        t0 = time.perf_counter()
        seg = segment_nuclei(img, size_check=size_check)
        t_total += time.perf_counter() - t0
        m = match_labels(gt, seg.labels)
        m.update(fn_breakdown(gt, seg.labels))
        m.update(fp_breakdown(gt, seg.labels))
        areas = np.bincount(gt.ravel())[1:]
        d_true = float(np.median(2 * np.sqrt(areas[areas > 0] / np.pi)))
        m.update(id=i[:8], n_true=int(gt.max()), n_pred=int(seg.labels.max()), d_est=seg.diameter_px,
                 d_true=d_true)
        rows.append(m)
        if verbose:
            print(f"{m['id']} {img.shape!s:12s} true={m['n_true']:4d} pred={m['n_pred']:4d} "
                  f"F1={m['f1']:.3f} IoU={m['mean_iou']:.3f} d_est={m['d_est']:.1f} d_true={d_true:.1f} "
                  f"found/est={seg.params.get('size_check_ratio') or float('nan'):.2f}")
    res = _pooled(rows)
    res["per_image_f1_median"] = float(np.median([r["f1"] for r in rows]))
    res["diameter_within_25pct"] = float(np.mean([abs(r["d_est"] / r["d_true"] - 1) <= 0.25 for r in rows]))
    res["seconds"] = t_total
    zoomed = f", enlarged {zoom}x" if zoom > 1 else f", shrunk to {zoom}x" if zoom < 1 else ""
    what = f"{len(rows)} images{zoomed}{f', {label}' if label else ''}{'' if size_check else ', size check off'}"
    print(f"DSB2018 dev ({what}): pooled F1@0.5 = {res['f1']:.3f} (TP {res['tp']}, FP {res['fp']}, "
          f"FN {res['fn']}), mean IoU of matches = {res['mean_iou']:.3f}, median per-image F1 = "
          f"{res['per_image_f1_median']:.3f}, diameter estimate within 25 %: {res['diameter_within_25pct']:.0%}, "
          f"{t_total:.1f} s")
    fnb = {k: sum(r[k] for r in rows) for k in ("under", "missed", "other")}
    res.update(fnb)
    print(f"  false negatives: {fnb['under']} under-split (inside a predicted object holding another true "
          f"nucleus), {fnb['missed']} missed, {fnb['other']} split or poorly outlined")
    fpb = {k: sum(r[k] for r in rows) for k in ("empty", "overlap")}
    res.update(fpb)
    print(f"  false positives: {fpb['empty']} on background (< 30 % on true nuclei), {fpb['overlap']} overlapping "
          f"true nuclei (under-split, fragments, poor outlines)")
    return res


def bench_stardist() -> dict:
    root = DATA / "stardist_nuclei_sample"
    img = tifffile.imread(root / "img2d.tif")
    gt = tifffile.imread(root / "mask2d.tif")
    seg = segment_nuclei(img)
    m = match_labels(gt, seg.labels)
    print(f"StarDist img2d: F1@0.5 = {m['f1']:.3f} (TP {m['tp']}, FP {m['fp']}, FN {m['fn']}), "
          f"mean IoU = {m['mean_iou']:.3f}, d_est = {seg.diameter_px:.1f} px")
    return m


def _synthetic_field(size: int, d_px: float, seed: int) -> np.ndarray:
    """A dense field of blurred discs with noise, for timing only."""
    rng = np.random.default_rng(seed)
    from scipy import ndimage as ndi
    img = np.zeros((size, size), np.float32)
    n = int(0.35 * size * size / (np.pi * d_px * d_px / 4))
    yy, xx = np.ogrid[:size, :size]
    r = d_px / 2
    for _ in range(n):
        cy, cx = rng.uniform(0, size, 2)
        rr = r * rng.uniform(0.8, 1.2)
        y0, y1 = int(max(0, cy - rr - 1)), int(min(size, cy + rr + 2))
        x0, x1 = int(max(0, cx - rr - 1)), int(min(size, cx + rr + 2))
        sub = (yy[y0:y1] - cy) ** 2 + (xx[:, x0:x1] - cx) ** 2 <= rr * rr
        img[y0:y1, x0:x1][sub] = rng.uniform(0.4, 1.0)
    img = ndi.gaussian_filter(img, 1.5) * 3000 + 200
    img += rng.normal(0, 30, img.shape).astype(np.float32)
    return np.clip(img, 0, 65535).astype(np.uint16)


def _best_cpu(img: np.ndarray, pix: float | None, runs: int = 2):
    """``(best CPU seconds, Segmentation)`` of ``runs`` calls of ``segment_nuclei(img, pixel_size_um=pix)``:
    CPU time of this process, robust to other jobs on a shared machine."""
    ts = []
    for _ in range(runs):
        t0 = time.process_time()
        seg = segment_nuclei(img, pixel_size_um=pix)
        ts.append(time.process_time() - t0)
    return min(ts), seg


def bench_speed() -> dict:
    out = {}
    for size, pix in ((1024, 0.1), (2048, 0.1), (1024, 0.16), (2048, 0.16), (2048, 0.2)):
        d_px = 9.0 / pix
        img = _synthetic_field(size, d_px, 0)
        segment_nuclei(img[:256, :256], pixel_size_um=pix)  # warm-up (imports)
        best, seg = _best_cpu(img, pix)
        ts = [best]
        tracemalloc.start()
        segment_nuclei(img, pixel_size_um=pix)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        mp = size * size / 1e6
        t_nopix, _ = _best_cpu(img, None, runs=1)
        out[(size, pix)] = min(ts) / mp
        print(f"{size}x{size} uint16, {pix} µm/px (nucleus {d_px:.0f} px), {seg.n_nuclei} nuclei: "
              f"{min(ts):.3f} s CPU = {min(ts) / mp:.3f} s/MP with pixel size; {t_nopix / mp:.3f} s/MP estimating "
              f"the scale; peak traced memory {peak / img.nbytes:.1f}x the field's bytes")
    # simulated marrow fields (textured, lobulated and touching nuclei of 6-12 µm; fishcount.simulate): the
    # estimate without a pixel size is the median visible nucleus, ~0.75-0.9 of the nominal 9 µm, so the
    # working image is larger and more nuclei are examined as clumps
    from fishcount.simulate import simulate_field

    for size, pix, density in ((2048, 0.16, 0.3), (2048, 0.2, 0.3), (2048, 0.2, 0.5), (1024, 0.16, 0.5)):
        dapi = simulate_field("del5q", shape=(size, size), pixel_size_um=pix, seed=7, density=density).image[0]
        segment_nuclei(dapi[:256, :256], pixel_size_um=pix)
        mp = size * size / 1e6
        best = {}
        for with_pix in (True, False):
            t, seg = _best_cpu(dapi, pix if with_pix else None)
            best[with_pix] = (t / mp, seg)
        peaks = {}
        for with_pix in (True, False):
            tracemalloc.start()
            segment_nuclei(dapi, pixel_size_um=pix if with_pix else None)
            peaks[with_pix] = tracemalloc.get_traced_memory()[1] / dapi.nbytes
            tracemalloc.stop()
        out[("sim", size, pix, density)] = best[True][0]
        print(f"simulated marrow {size}x{size}, {pix} µm/px, density {density}, {best[True][1].n_nuclei} nuclei: "
              f"{best[True][0]:.3f} s/MP with pixel size; {best[False][0]:.3f} s/MP estimating the scale "
              f"(d {best[False][1].diameter_px:.0f} px for a nominal {9.0 / pix:.0f}); peak traced memory "
              f"{peaks[True]:.1f}x / {peaks[False]:.1f}x the field's bytes")
    return out


def evaluate_sim(sim, seg) -> dict:
    """Score a segmentation of a simulated field; border nuclei are excluded on both sides.

    A true nucleus is found when a predicted non-border nucleus matches it at IoU >= 0.5; predicted
    nuclei that touch the border, or whose best true partner touches the border, are ignored.
    """
    truth = sim.truth.set_index("label")
    true = sim.labels.astype(np.int64)
    pred = seg.labels.astype(np.int64)
    border_t = set(truth.index[truth["border"].astype(bool)])
    border_p = set(seg.qc.loc[seg.qc["touches_border"], "label"])
    nt, npd = int(true.max()), int(pred.max())
    sel = (true > 0) & (pred > 0)
    k, inter = np.unique(true[sel] * (npd + 1) + pred[sel], return_counts=True)
    ti, pi = k // (npd + 1), k % (npd + 1)
    at = np.bincount(true.ravel(), minlength=nt + 1)
    ap = np.bincount(pred.ravel(), minlength=npd + 1)
    iou = inter / (at[ti] + ap[pi] - inter)
    best_t = {}  # pred -> (iou, true) with the largest overlap
    for t, p_, v, o in zip(ti, pi, iou, inter):
        if p_ not in best_t or o > best_t[p_][1]:
            best_t[p_] = (v, o, t)
    matched_t = {}
    for j in np.argsort(-iou):
        if iou[j] < 0.5:
            break
        if ti[j] in matched_t or pi[j] in matched_t.values():
            continue
        matched_t[int(ti[j])] = int(pi[j])
    true_ids = [t for t in truth.index if t not in border_t and at[t] > 0]
    pred_ids = [p_ for p_ in range(1, npd + 1) if ap[p_] > 0 and p_ not in border_p
                and not (p_ in best_t and best_t[p_][2] in border_t)]
    tp = sum(1 for t in true_ids if t in matched_t and matched_t[t] not in border_p)
    fn = len(true_ids) - tp
    fp = sum(1 for p_ in pred_ids if p_ not in matched_t.values())
    lob = [t for t in true_ids if bool(truth.loc[t, "lobulated"])]
    tch = [t for t in true_ids if bool(truth.loc[t, "touching"])]
    return {"tp": tp, "fp": fp, "fn": fn, "lob_total": len(lob),
            "lob_whole": sum(1 for t in lob if t in matched_t),
            "touch_total": len(tch), "touch_split": sum(1 for t in tch if t in matched_t),
            "mean_iou": float(np.mean([iou[(ti == t) & (pi == matched_t[t])][0] for t in true_ids
                                       if t in matched_t])) if tp else float("nan")}


def bench_sim(n_fields: int = 6, verbose: bool = False) -> dict | None:
    try:
        from fishcount.simulate import simulate_field
    except ImportError:
        print("simulated fields: fishcount.simulate is not available")
        return None
    rows = []
    for seed in range(n_fields):
        pix = (0.16, 0.11, 0.22)[seed % 3]
        sim = simulate_field("del5q", shape=(768, 768), pixel_size_um=pix, seed=seed)
        dapi = sim.image[0]
        for with_pix in (True, False):
            seg = segment_nuclei(dapi, pixel_size_um=pix if with_pix else None)
            m = evaluate_sim(sim, seg)
            m.update(seed=seed, pix=pix, with_pix=with_pix, d=seg.diameter_px)
            rows.append(m)
            if verbose:
                print(f"seed {seed} {pix} µm/px {'pixel size' if with_pix else 'estimated '} d={seg.diameter_px:.0f}px "
                      f"TP {m['tp']} FP {m['fp']} FN {m['fn']} lobulated {m['lob_whole']}/{m['lob_total']} "
                      f"touching {m['touch_split']}/{m['touch_total']}")
    out = {}
    for with_pix in (True, False):
        rs = [r for r in rows if r["with_pix"] == with_pix]
        res = _pooled(rs)
        lw, lt = sum(r["lob_whole"] for r in rs), sum(r["lob_total"] for r in rs)
        sw, st = sum(r["touch_split"] for r in rs), sum(r["touch_total"] for r in rs)
        res.update(lobulated_whole=lw / max(1, lt), touching_split=sw / max(1, st))
        out[with_pix] = res
        from fishcount.scoring import clopper_pearson

        def ci(k: int, n: int) -> str:  # exact 95 % interval of a proportion (fishcount.scoring)
            lo, hi = clopper_pearson(k, n) if n else (float("nan"), float("nan"))
            return f"[{lo:.1%}, {hi:.1%}]"

        print(f"simulated marrow ({len(rs)} fields 768², 0.11/0.16/0.22 µm/px, "
              f"{'pixel size given' if with_pix else 'no pixel size'}): F1@0.5 = {res['f1']:.3f} "
              f"(TP {res['tp']}, FP {res['fp']}, FN {res['fn']}), mean IoU {res['mean_iou']:.3f}, "
              f"lobulated whole {lw}/{lt} = {res['lobulated_whole']:.1%} {ci(lw, lt)}, touching split {sw}/{st} = "
              f"{res['touching_split']:.1%} {ci(sw, st)}")
    return out


def _outline_rgb(img: np.ndarray, labels: np.ndarray | None, qc=None,
                 truth: np.ndarray | None = None) -> np.ndarray:
    from skimage.segmentation import find_boundaries
    a = img.astype(np.float32)
    lo, hi = np.percentile(a, [0.5, 99.7])
    a = np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.stack([a, a, a], -1)
    if labels is None:  # the image alone
        return rgb
    if truth is not None:
        rgb[find_boundaries(truth, mode="inner")] = (0.2, 0.8, 1.0)
        return rgb
    ok = set(qc.loc[qc["scorable"], "label"]) if qc is not None else set(np.unique(labels))
    b = find_boundaries(labels, mode="inner")
    good = np.isin(labels, list(ok))
    rgb[b & good] = (0.1, 1.0, 0.1)
    rgb[b & ~good] = (1.0, 0.25, 0.1)
    return rgb


def figures(out_dir: Path) -> None:
    """Overlay pictures for docs/segmentation.md: a real DSB2018 image, a simulated marrow field, a field of
    the independent generator (bench_othersim.py) and a real high-resolution Hoechst image (~160-px nuclei,
    outlines interpolated from the working scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from fishcount._atomic import atomic_path
    from fishcount.simulate import simulate_field

    root = DATA / "dsb2018_fluo_dev"
    rid = "150b0ffa"
    full = next(p for p in (root / "images").glob(f"{rid}*.tif"))
    img = tifffile.imread(full)
    gt = tifffile.imread(root / "masks" / full.name)
    seg = segment_nuclei(img)
    m = match_labels(gt, seg.labels)
    sim = simulate_field("del5q", shape=(640, 640), pixel_size_um=0.16, seed=7)
    sseg = segment_nuclei(sim.image[0], pixel_size_um=0.16)
    from bench_othersim import ellipse_field

    oimg, otrue, _, _ = ellipse_field(640, 0.16, 1, (1.3, 2.5), lobulated=0.2)
    oseg = segment_nuclei(oimg, pixel_size_um=0.16)
    hoechst = tifffile.imread(DATA / "cellprofiler_speckles" / "images" / "1-162hrhoe2.tif")
    hseg = segment_nuclei(hoechst)
    cases = [
        ("real", img, gt, seg, f"DSB2018 {rid} (no pixel size; nucleus {seg.diameter_px:.0f} px estimated): "
                               f"F1@0.5 = {m['f1']:.2f}"),
        ("simulated", sim.image[0], sim.labels, sseg, "simulated marrow field, 0.16 µm/px (fishcount.simulate, "
                                                     "seed 7)"),
        ("othersim", oimg, otrue, oseg, "independent generator (bench_othersim.py: ellipses of aspect 1.3-2.5, "
                                        f"20 % lobulated), 0.16 µm/px: F1@0.5 = {match_labels(otrue, oseg.labels)['f1']:.2f} "
                                        "(border nuclei included)"),
        ("highres", hoechst, None, hseg, "CellProfiler ExampleSpeckles Hoechst image, 1000x1200 (no pixel size; "
                                         f"nucleus {hseg.diameter_px:.0f} px estimated; no ground truth)"),
    ]
    for name, im, truth, sg, title in cases:
        fig, ax = plt.subplots(1, 2, figsize=(12, 6.2), dpi=90)
        ax[0].imshow(_outline_rgb(im, truth, truth=truth))
        ax[0].set_title("image" if truth is None else "ground truth", fontsize=10)
        ax[1].imshow(_outline_rgb(im, sg.labels, sg.qc))
        ax[1].set_title(f"fishcount: {sg.n_nuclei} nuclei, {sg.n_scorable} scorable (green), "
                        f"{sg.n_nuclei - sg.n_scorable} excluded (red)", fontsize=10)
        for a in ax:
            a.set_axis_off()
        fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        target = out_dir / f"segmentation_{name}.png"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        print(f"wrote {target}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["dsb", "stardist", "sim", "speed", "all", "figures"])
    ap.add_argument("--verbose", "-v", action="store_true")
    ap.add_argument("--zoom", type=float, default=1.0,
                    help="dsb: resample every image (and its masks) by this factor first (default 1)")
    ap.add_argument("--max-mp", type=float, default=8.0, help="dsb with --zoom: skip larger results (default 8)")
    ap.add_argument("--no-size-check", action="store_true", help="dsb: segment_nuclei(size_check=False)")
    ap.add_argument("--fields", type=int, default=6,
                    help="sim: number of simulated fields, seeds 0..N-1 (default 6; benchmark seeds only, the dev "
                         "seeds are 100+)")
    a = ap.parse_args(argv)
    if a.what in ("dsb", "all"):
        bench_dsb(a.verbose, a.zoom, a.max_mp, not a.no_size_check)
    if a.what in ("stardist", "all"):
        bench_stardist()
    if a.what in ("sim", "all"):
        bench_sim(n_fields=a.fields, verbose=a.verbose)
    if a.what in ("speed", "all"):
        bench_speed()
    if a.what == "figures":
        figures(Path(__file__).resolve().parents[1] / "docs" / "img")
    return 0


if __name__ == "__main__":
    sys.exit(main())
