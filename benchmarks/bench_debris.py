"""Bright debris on simulated marrow fields: segmentation F1 with and without small specks.

Usage (one core, as reported in docs/benchmarks.md)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_debris.py [--specks 40] [--brightness 10]
        [--size-um 0.6] [--seeds 0-5] [--clip 3 --scale-clip 5]

Fluorescent debris, dye precipitate and dust in marrow preparations can be many times brighter than any
nucleus. Each field of ``fishcount.simulate`` (the same fields and pixel sizes as ``bench_segment.py sim``)
gets ``--specks`` Gaussian specks of FWHM ``--size-um`` at random places (on the background and on nuclei),
with a peak ``--brightness`` x the 90th percentile of the nuclei's DAPI. The specks are not in the truth;
border nuclei are left out on both sides (``bench_segment.evaluate_sim``). ``--clip`` / ``--scale-clip``
override ``[classical] bright_clip`` / ``[scale] scale_bright_clip`` (0 = off) for the run.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_segment import evaluate_sim  # noqa: E402

from fishcount import segment as S  # noqa: E402
from fishcount.simulate import simulate_field  # noqa: E402


def add_specks(img: np.ndarray, nuclei: np.ndarray, n: int, brightness: float, fwhm_px: float,
               seed: int) -> np.ndarray:
    """``img`` (uint16) with ``n`` Gaussian specks of the given FWHM (px) and a peak ``brightness`` x the
    90th percentile of the pixels of ``nuclei`` (> 0) above the image's median (the background)."""
    rng = np.random.default_rng(seed)
    out = img.astype(np.float32)
    bg = float(np.median(out))
    peak = brightness * (float(np.percentile(out[nuclei > 0], 90)) - bg)
    sigma = fwhm_px / 2.3548
    r = int(math.ceil(4 * sigma)) + 1
    yy, xx = np.mgrid[-r: r + 1, -r: r + 1]
    for _ in range(n):
        cy, cx = rng.uniform(0, img.shape[0]), rng.uniform(0, img.shape[1])
        iy, ix = int(cy), int(cx)
        g = peak * np.exp(-((yy + iy - cy) ** 2 + (xx + ix - cx) ** 2) / (2 * sigma * sigma))
        y0, x0 = iy - r, ix - r
        sy = slice(max(0, y0), min(img.shape[0], y0 + 2 * r + 1))
        sx = slice(max(0, x0), min(img.shape[1], x0 + 2 * r + 1))
        out[sy, sx] += g[sy.start - y0: sy.stop - y0, sx.start - x0: sx.stop - x0]
    return np.clip(np.round(out), 0, 65535).astype(np.uint16)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--specks", type=int, default=40, help="specks per field (default 40)")
    ap.add_argument("--brightness", type=float, default=10.0,
                    help="speck peak over the nuclei's 90th percentile, above background (default 10)")
    ap.add_argument("--size-um", type=float, default=0.6, help="speck FWHM, µm (default 0.6)")
    ap.add_argument("--seeds", default="0-5", help="simulator seeds, e.g. 0-5 (benchmark) or 100-111 (dev)")
    ap.add_argument("--clip", type=float, default=None, help="override [classical] bright_clip")
    ap.add_argument("--scale-clip", type=float, default=None, help="override [scale] scale_bright_clip")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    if a.clip is not None:
        S.CLASSICAL_DEFAULTS["bright_clip"] = a.clip
    if a.scale_clip is not None:
        S.SCALE_BRIGHT_CLIP = a.scale_clip
    lo, hi = (int(x) for x in a.seeds.split("-"))
    tot: dict[tuple[str, bool], list[int]] = {}
    for seed in range(lo, hi + 1):
        pix = (0.16, 0.11, 0.22)[seed % 3]
        sim = simulate_field("del5q", shape=(768, 768), pixel_size_um=pix, seed=seed)
        dirty = add_specks(sim.image[0], ndi.binary_erosion(sim.labels > 0), a.specks, a.brightness,
                           a.size_um / pix, seed + 1000)
        for name, img in (("clean", sim.image[0]), ("debris", dirty)):
            for with_pix in (True, False):
                seg = S.segment_nuclei(img, pixel_size_um=pix if with_pix else None)
                m = evaluate_sim(sim, seg)
                t = tot.setdefault((name, with_pix), [0, 0, 0])
                t[0] += m["tp"]
                t[1] += m["fp"]
                t[2] += m["fn"]
                if a.verbose:
                    print(f"seed {seed} {pix} µm/px {name:6s} {'pixel size' if with_pix else 'estimated '} "
                          f"d={seg.diameter_px:.0f}px TP {m['tp']} FP {m['fp']} FN {m['fn']}")
    print(f"{a.specks} specks per field, {a.brightness:g}x the nuclei, FWHM {a.size_um:g} µm; seeds {a.seeds}; "
          f"bright_clip {S.CLASSICAL_DEFAULTS['bright_clip']:g}, scale_bright_clip {S.SCALE_BRIGHT_CLIP:g}")
    for (name, with_pix), (tp, fp, fn) in tot.items():
        f1 = 2 * tp / max(1, 2 * tp + fp + fn)
        print(f"  {name:6s} {'pixel size' if with_pix else 'estimated '}: F1 {f1:.3f} (TP {tp}, FP {fp}, FN {fn})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
