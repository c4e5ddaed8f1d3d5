"""Segmentation on fields from a second, independent nucleus generator (not ``fishcount.simulate``).

fishcount's defaults were developed on its own simulator and on DSB2018; this generator draws nuclei
another way, so a rule that only fits the project's own simulator shows up here. Nuclei are filled
ellipses (equivalent diameter 7-11 µm, ``--diam``; aspect ratio drawn from ``--elong``, random orientation)
with smooth chromatin texture (low-pass noise, relative SD ``--texture``), per-nucleus brightness 0.4-1.0
(``--brightness``),
placed without overlap, a share ``--touching`` of them pressed against an earlier one (gap 0-1 px), on
a background with a linear gradient, blurred by a Gaussian PSF of sigma ``--psf`` µm, with Poisson
photon noise (``--photons`` at brightness 1) and Gaussian read noise, stored as uint16.

``--lobulated`` makes that share of the nuclei segmented granulocytes: 2-4 lobes of 3.5-5 µm along a bent
chain, 0.4-1.2 µm apart, joined by chromatin strands 0.3-0.8 µm wide.

Scoring as ``bench_segment.evaluate_sim``' F1: nuclei touching the image border are removed from both
the truth and the prediction first; a true nucleus is found when one predicted nucleus matches it at
IoU >= 0.5; touching nuclei: share of those pressed against another that are found; lobulated whole: share
of the lobulated nuclei that are found (one predicted nucleus, IoU >= 0.5).

Usage (repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_othersim.py             # the standard grid
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_othersim.py --elong 1.5 2.5 --pixel 0.2
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fishcount.segment import match_labels, segment_nuclei  # noqa: E402


def ellipse_field(size: int = 1024, pixel_um: float = 0.16, seed: int = 0, elong: tuple[float, float] = (1.0, 1.6),
                  n_target: int | None = None, touching: float = 0.3, texture: float = 0.15,
                  psf_um: float = 0.3, photons: float = 400.0, read_noise: float = 8.0,
                  diam_um: tuple[float, float] = (7.0, 11.0), brightness: tuple[float, float] = (0.4, 1.0),
                  lobulated: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One field: uint16 image (Y, X), int32 true labels (Y, X), and per label 1..n two bools: pressed
    against another nucleus, lobulated (a share ``lobulated`` of the nuclei, :func:`_nucleus_shape`)."""
    rng = np.random.default_rng(seed)
    h = w = size
    labels = np.zeros((h, w), np.int32)
    img = np.zeros((h, w), np.float64)
    mean_d = 0.5 * (diam_um[0] + diam_um[1]) / pixel_um
    if n_target is None:  # ~30 % of the field covered
        n_target = int(0.3 * h * w / (math.pi * mean_d ** 2 / 4))
    centres: list[tuple[float, float, float]] = []  # (y, x, mean radius)
    touch: list[bool] = []
    lobes: list[bool] = []
    yy, xx = np.mgrid[0:h, 0:w]
    tries = 0
    while len(centres) < n_target and tries < 50 * n_target:
        tries += 1
        d = rng.uniform(*diam_um) / pixel_um
        lobed = lobulated > 0 and rng.random() < lobulated  # (no draw without lobulated nuclei: the same fields)
        parts, bridges, radius, extent = _nucleus_shape(rng, d, pixel_um, elong, lobed)
        pressed = bool(centres) and rng.random() < touching
        if pressed:  # beside an earlier nucleus, along a random direction, then pushed in until they touch
            cy0, cx0, r0 = centres[rng.integers(len(centres))]
            phi = rng.uniform(0, 2 * math.pi)
            dist = r0 + radius + 2
            cy, cx = cy0 + dist * math.sin(phi), cx0 + dist * math.cos(phi)
        else:
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = int(math.ceil(extent)) + 2
        y0, y1, x0, x1 = max(0, int(cy) - r), min(h, int(cy) + r + 1), max(0, int(cx) - r), min(w, int(cx) + r + 1)
        if y1 <= y0 or x1 <= x0:
            continue
        inside = _inside(yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx, parts, bridges)
        if pressed:  # shrink the gap: move toward the partner until the first contact
            for _ in range(12):
                if (labels[y0:y1, x0:x1][inside] > 0).any():
                    break
                cy += (cy0 - cy) * 0.04
                cx += (cx0 - cx) * 0.04
                inside = _inside(yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx, parts, bridges)
            clash = labels[y0:y1, x0:x1][inside] > 0
            if not clash.size or clash.mean() > 0.03:
                continue
        if not pressed and (labels[y0:y1, x0:x1][inside] > 0).any():
            continue
        sub = labels[y0:y1, x0:x1]
        free = inside & (sub == 0)
        if free.sum() < 0.5 * inside.sum():
            continue
        k = len(centres) + 1
        sub[free] = k
        tex = ndi.gaussian_filter(rng.normal(0, 1, free.shape), max(1.0, 0.6 / pixel_um))
        tex *= texture / max(tex.std(), 1e-9)
        img[y0:y1, x0:x1][free] = rng.uniform(*brightness) * (1.0 + tex[free])
        centres.append((cy, cx, radius))
        touch.append(pressed)
        lobes.append(lobed)
    n = len(centres)
    # a partner pressed against a later nucleus is touching too
    pressed = np.zeros(n + 1, bool)
    pressed[1:] = touch
    right = labels[:, 1:], labels[:, :-1]
    down = labels[1:, :], labels[:-1, :]
    for p, q in (right, down):
        m = (p > 0) & (q > 0) & (p != q)
        pressed[p[m]] = True
        pressed[q[m]] = True
    grad = 0.15 * (yy / h) + 0.1 * (xx / w)
    sig = ndi.gaussian_filter(np.clip(img, 0, None), psf_um / pixel_um) + 0.08 + grad
    counts = rng.poisson(sig * photons).astype(np.float64) + rng.normal(0, read_noise, sig.shape) + 100
    return np.clip(counts, 0, 65535).astype(np.uint16), labels, pressed[1:], np.array(lobes, bool)


def _nucleus_shape(rng: np.random.Generator, d: float, pixel_um: float, elong: tuple[float, float],
                   lobed: bool) -> tuple[list, list, float, float]:
    """A nucleus of equivalent diameter ~``d`` px as ellipses ``(oy, ox, a, b, theta)`` (offsets from its
    centre) joined by bridges ``(y0, x0, y1, x1, half_width)``; its mean radius and its extent (px) from the
    centre.
    One ellipse of aspect ratio drawn from ``elong``, or (``lobed``) a segmented granulocyte: 2-4 lobes of
    3.5-5 µm along a bent chain, 0.4-1.2 µm apart, joined by chromatin strands 0.3-0.8 µm wide."""
    if not lobed:
        ar = rng.uniform(*elong)
        a, b = d / 2 * math.sqrt(ar), d / 2 / math.sqrt(ar)  # semi-axes, area = pi d^2 / 4
        return [(0.0, 0.0, a, b, rng.uniform(0, math.pi))], [], (a + b) / 2, a
    k = int(rng.integers(2, 5))
    parts, bridges = [], []
    y = x = 0.0
    heading = rng.uniform(0, 2 * math.pi)
    for j in range(k):
        dl = rng.uniform(3.5, 5.0) / pixel_um
        ar = rng.uniform(1.0, 1.5)
        a, b = dl / 2 * math.sqrt(ar), dl / 2 / math.sqrt(ar)
        if j:
            gap = rng.uniform(0.4, 1.2) / pixel_um
            heading += rng.uniform(-1.0, 1.0)
            py, px, pa, pb, _ = parts[-1]
            step = (pa + pb) / 2 + (a + b) / 2 + gap
            ny, nx = py + step * math.sin(heading), px + step * math.cos(heading)
            bridges.append((py, px, ny, nx, rng.uniform(0.15, 0.4) / pixel_um))
            y, x = ny, nx
        parts.append((y, x, a, b, rng.uniform(0, math.pi)))
    cy = float(np.mean([q[0] for q in parts]))
    cx = float(np.mean([q[1] for q in parts]))
    parts = [(py - cy, px - cx, a, b, t) for py, px, a, b, t in parts]
    bridges = [(y0 - cy, x0 - cx, y1 - cy, x1 - cx, w) for y0, x0, y1, x1, w in bridges]
    extent = max(math.hypot(py, px) + max(a, b) for py, px, a, b, _ in parts)
    return parts, bridges, 0.5 * extent, extent


def _inside(dy: np.ndarray, dx: np.ndarray, parts: list, bridges: list) -> np.ndarray:
    """Bool mask of the pixels at offsets (dy, dx) from the centre inside the shape of :func:`_nucleus_shape`."""
    out = np.zeros(dy.shape, bool)
    for oy, ox, a, b, th in parts:
        ey, ex = dy - oy, dx - ox
        u = ex * math.cos(th) + ey * math.sin(th)
        v = -ex * math.sin(th) + ey * math.cos(th)
        out |= (u / a) ** 2 + (v / b) ** 2 <= 1.0
    for y0, x0, y1, x1, hw in bridges:
        vy, vx = y1 - y0, x1 - x0
        t = np.clip(((dy - y0) * vy + (dx - x0) * vx) / max(vy * vy + vx * vx, 1e-9), 0, 1)
        out |= (dy - y0 - t * vy) ** 2 + (dx - x0 - t * vx) ** 2 <= hw * hw
    return out


def score(true: np.ndarray, pred: np.ndarray, pressed: np.ndarray, lobed: np.ndarray | None = None) -> dict:
    def drop_border(lab):
        edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        out = lab.copy()
        out[np.isin(out, edge[edge > 0])] = 0
        return out, set(edge.tolist())
    t, t_edge = drop_border(true)
    p, _ = drop_border(pred)
    m = match_labels(t, p)
    # touching nuclei found: match each true touching nucleus individually
    ids = [i for i in range(1, len(pressed) + 1) if pressed[i - 1] and i not in t_edge and (true == i).any()]
    sel = (t > 0) & (p > 0)
    npd = int(p.max())
    k, inter = np.unique(t[sel].astype(np.int64) * (npd + 1) + p[sel], return_counts=True)
    ti, pi = k // (npd + 1), k % (npd + 1)
    at = np.bincount(t.ravel(), minlength=int(t.max()) + 1)
    ap = np.bincount(p.ravel(), minlength=npd + 1)
    iou = inter / (at[ti] + ap[pi] - inter)
    found = set(ti[iou >= 0.5].tolist())
    m["touch_found"] = sum(1 for i in ids if i in found)
    m["touch_total"] = len(ids)
    lob = [] if lobed is None else [i for i in range(1, len(lobed) + 1)
                                    if lobed[i - 1] and i not in t_edge and (true == i).any()]
    m["lob_whole"] = sum(1 for i in lob if i in found)
    m["lob_total"] = len(lob)
    return m


def pipeline(pixels: list[float], elongs: list[tuple[float, float]], n_seeds: int, field_kw: dict,
             analyze_params: dict | None = None) -> None:
    """The whole pipeline (``analyze_field``, del5q panel) on this generator's nuclei with probe signals
    drawn by ``bench_semisynthetic.generate_probes`` (also independent of ``fishcount.simulate``): count
    accuracy on scorable matched nuclei, share of the true interior nuclei scorable and matched, clone %
    measured vs true; the same with the true masks as segmentation. ``analyze_params``: keyword overrides
    for ``analyze_field`` (``--analyze KEY=VALUE``)."""
    from collections import Counter

    import fishcount as fc
    from bench_semisynthetic import evaluate, generate_probes, truth_segmentation
    from fishcount.io import field_from_arrays

    panel = fc.load_panel("del5q")
    keys = [f"count_{sg}" for sg in panel.signal_names]
    tracked = set(panel.tracked_calls)
    print(f"{'pixel µm':>8s} {'aspect':>9s} {'segmentation':>12s} {'accuracy':>16s} {'scorable':>9s} "
          f"{'clone % (true)':>15s}")
    for pix in pixels:
        for el in elongs:
            tot = {"own": Counter(), "true masks": Counter()}
            for seed in range(n_seeds):
                img, true, _, _ = ellipse_field(1024, pix, seed, el, **field_kw)
                rng = np.random.default_rng([seed, 7])
                probes, truth, spots = generate_probes(img.astype(np.float32), true, pix, rng,
                                                       signal_diameter_um=panel.signal_diameter_um)
                fld = field_from_arrays(img, probes, pix, panel=panel, name=f"f{seed}")
                ap_ = analyze_params or {}
                r_tm = fc.analyze_field(fld, panel, segmentation=truth_segmentation(true, truth, pix), **ap_)
                r_own = fc.analyze_field(fld, panel, **ap_)
                for name, r in (("own", r_own), ("true masks", r_tm)):
                    e = evaluate(r, truth, true, spots, pix, keys, tracked, Counter(),
                                 true_mask_result=None if name == "true masks" else r_tm)
                    tot[name].update({k: v for k, v in e.items() if isinstance(v, (int, np.integer))})
            for name, t in tot.items():
                acc = t["correct"] / max(1, t["scorable_matched"])
                print(f"{pix:8.2f} {el[0]:4.1f}-{el[1]:<4.1f} {name:>12s} {acc:8.3f} ({t['scorable_matched']:4d}) "
                      f"{100 * t['scorable_matched'] / max(1, t['true_interior']):8.1f}% "
                      f"{100 * t['clone_num'] / max(1, t['clone_den']):6.1f} ({100 * t['true_clone_num'] / max(1, t['true_interior']):.1f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="fields per condition (seeds 0..N-1)")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--pixel", type=float, nargs="*", default=None, help="pixel sizes, µm (default 0.1 0.16 0.24)")
    ap.add_argument("--elong", type=float, nargs=2, default=None, help="aspect ratio range (default: a grid)")
    ap.add_argument("--touching", type=float, default=0.3)
    ap.add_argument("--texture", type=float, default=0.15)
    ap.add_argument("--psf", type=float, default=0.3, help="PSF sigma, µm")
    ap.add_argument("--photons", type=float, default=400.0, help="photons at the brightest nucleus level")
    ap.add_argument("--diam", type=float, nargs=2, default=(7.0, 11.0), help="equivalent diameter range, µm")
    ap.add_argument("--brightness", type=float, nargs=2, default=(0.4, 1.0), help="nucleus brightness range")
    ap.add_argument("--lobulated", type=float, default=0.0, help="share of segmented (2-4 lobe) nuclei")
    ap.add_argument("--pipeline", action="store_true",
                    help="the whole pipeline with independently drawn del5q probe signals, not segmentation alone")
    ap.add_argument("--analyze", action="append", default=[], metavar="KEY=VALUE",
                    help="with --pipeline: an analyze_field keyword (e.g. dim_band=1.0), repeatable")
    a = ap.parse_args(argv)
    pixels = a.pixel or [0.1, 0.16, 0.24]
    elongs = [tuple(a.elong)] if a.elong else [(1.0, 1.3), (1.3, 2.0), (2.0, 3.0)]
    if a.pipeline:
        pipeline(pixels, elongs, a.seeds, dict(touching=a.touching, texture=a.texture, psf_um=a.psf,
                                              photons=a.photons, diam_um=tuple(a.diam),
                                              brightness=tuple(a.brightness), lobulated=a.lobulated),
                 {k: float(v) for k, v in (x.split("=", 1) for x in a.analyze)})
        return 0
    print(f"{'pixel µm':>8s} {'aspect':>9s} {'scale':>10s} {'F1':>6s} {'TP/FP/FN':>14s} {'IoU':>5s} "
          f"{'touching found':>15s} {'lobulated whole':>15s} {'d est/true':>10s} {'s':>5s}")
    for pix in pixels:
        for el in elongs:
            for with_pix in (True, False):
                tot = dict(tp=0, fp=0, fn=0, touch_found=0, touch_total=0, lob_whole=0, lob_total=0)
                ious, ratios, t_all = [], [], 0.0
                for seed in range(a.seeds):
                    img, true, pressed, lobed = ellipse_field(
                        a.size, pix, seed, el, touching=a.touching, texture=a.texture, psf_um=a.psf,
                        photons=a.photons, diam_um=tuple(a.diam), brightness=tuple(a.brightness),
                        lobulated=a.lobulated)
                    t0 = time.process_time()
                    seg = segment_nuclei(img, pixel_size_um=pix if with_pix else None)
                    t_all += time.process_time() - t0
                    m = score(true, seg.labels, pressed, lobed)
                    for k in tot:
                        tot[k] += int(m[k])
                    ious.append(m["mean_iou"])
                    area = np.bincount(true.ravel())[1:]
                    ratios.append(seg.diameter_px / float(np.median(2 * np.sqrt(area[area > 0] / np.pi))))
                f1 = 2 * tot["tp"] / max(1, 2 * tot["tp"] + tot["fp"] + tot["fn"])
                print(f"{pix:8.2f} {el[0]:4.1f}-{el[1]:<4.1f} {'pixel size' if with_pix else 'estimated':>10s} "
                      f"{f1:6.3f} {tot['tp']:5d}/{tot['fp']}/{tot['fn']:<4d} {np.nanmean(ious):5.3f} "
                      f"{tot['touch_found']:6d}/{tot['touch_total']:<4d} {100 * tot['touch_found'] / max(1, tot['touch_total']):3.0f} % "
                      f"{tot['lob_whole']:6d}/{tot['lob_total']:<4d} {100 * tot['lob_whole'] / max(1, tot['lob_total']):3.0f} % "
                      f"{np.mean(ratios):10.2f} {t_all:5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
