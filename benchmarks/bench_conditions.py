"""Segmentation of the DSB2018 dev images under changed image conditions (no pixel size).

Usage (one core, as reported in docs/benchmarks.md, tenth session)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_conditions.py CONDITION [-v]

Every image (and its masks, where the geometry changes) is transformed, segmented with the defaults of
``fishcount.segment_nuclei`` and matched at IoU >= 0.5; the pooled F1 is printed (-v: one line per image).
Conditions:

* ``none``: as read;
* ``offset``: a camera offset and 40 grey levels, ``round(100 + 40 img / max)`` as uint16;
* ``pad``: a black border of a quarter of the height and width on top and left (stitched or registered
  fields);
* ``sat``: over-exposed, clipped at the 90th percentile of the nucleus pixels;
* ``noise200`` / ``noise50`` (any ``noiseN``): photon noise, ``Poisson(N img / max + 2)`` as uint16;
* ``rot90`` / ``flip``: the image and masks rotated by 90 degrees / turned upside down.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tifffile  # noqa: E402

from fishcount.segment import match_labels, segment_nuclei  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsb2018_fluo_dev"


def transform(condition: str, img: np.ndarray, masks: np.ndarray,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(image, masks)`` under ``condition`` (see the module docstring); ``img`` (Y, X) any real dtype,
    ``masks`` (Y, X) int labels. Raises ValueError for an unknown condition."""
    img = np.asarray(img, np.float64)
    if condition == "none":
        return img.astype(np.float32), masks
    if condition == "offset":
        return np.round(100 + img / max(1.0, img.max()) * 40).astype(np.uint16), masks
    if condition == "pad":
        h, w = img.shape
        out = np.zeros((h + h // 4, w + w // 4), np.float32)
        out[h // 4:, w // 4:] = img
        lab = np.zeros(out.shape, masks.dtype)
        lab[h // 4:, w // 4:] = masks
        return out, lab
    if condition == "sat":
        top = np.percentile(img[masks > 0], 90) if (masks > 0).any() else img.max()
        return np.minimum(img, top).astype(np.float32), masks
    if condition.startswith("noise") and condition[5:].isdigit():
        photons = float(condition[5:])
        return rng.poisson(img / max(1.0, img.max()) * photons + 2).astype(np.uint16), masks
    if condition == "rot90":
        return np.rot90(img).astype(np.float32), np.rot90(masks).copy()
    if condition == "flip":
        return img[::-1].astype(np.float32), masks[::-1].copy()
    raise ValueError(f"unknown condition {condition!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("condition", help="none, offset, pad, sat, noise200, noise50, rot90, flip")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    with open(DATA / "manifest.csv") as fh:
        ids = [r["id"] for r in csv.DictReader(fh)]
    rng = np.random.default_rng(0)
    tp = fp = fn = 0
    for i in ids:
        img, masks = transform(a.condition, tifffile.imread(DATA / "images" / f"{i}.tif"),
                               tifffile.imread(DATA / "masks" / f"{i}.tif"), rng)
        seg = segment_nuclei(img)
        m = match_labels(masks, seg.labels)
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        if a.verbose:
            print(f"{i[:8]} F1={m['f1']:.3f} d={seg.diameter_px:.1f} ({seg.diameter_source})")
    print(f"DSB2018 dev, {a.condition}: pooled F1@0.5 = {2 * tp / max(1, 2 * tp + fp + fn):.3f} "
          f"(TP {tp}, FP {fp}, FN {fn})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
