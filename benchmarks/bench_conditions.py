"""Segmentation of the DSB2018 dev images under changed image conditions (no pixel size).

Usage (one core, as reported in docs/benchmarks.md, tenth session)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_conditions.py CONDITION [-v]

Every image (and its masks, where the geometry changes) is transformed, then scored as
``bench_segment.py dsb`` scores it (defaults of ``fishcount.segment_nuclei``, pooled F1 at IoU >= 0.5; -v: one
line per image).
Conditions:

* ``none``: as read;
* ``offset``: a camera offset and 40 grey levels, ``round(100 + 40 img / max)`` as uint16;
* ``pad``: a black border of a quarter of the height and width on top and left (stitched or registered
  fields);
* ``sat``: over-exposed, clipped at the 90th percentile of the nucleus pixels;
* ``noise200`` / ``noise50`` (any ``noiseN``): photon noise, ``Poisson(N img / max + 2)`` as uint16;
* ``rot90`` / ``flip``: the image and masks rotated by 90 degrees / turned upside down;
* ``vignette``: uneven illumination, the image times ``1 - 0.6 r^2`` (r = distance from the centre over the
  half-diagonal: the corners get 40 %);
* ``gradient``: an additive background ramp from 0 at the left edge to half the image maximum at the right;
* ``blur``: defocus, a Gaussian of sigma 2 px;
* ``gamma``: a display-stretched image, ``max (img / max) ** 0.5``;
* ``hot``: camera hot pixels, one pixel in 2000 (drawn at random) set to 4x the image maximum;
* ``jpeg``: exported as an 8-bit JPEG of quality 70 (min-max stretched) and read back (12th session);
* ``tiles``: a stitched mosaic, tiles of 128² px each with its own gain (0.6-1.4, ``TILE_GAIN`` 0.4) and
  offset (0-10 % of the maximum, ``TILE_OFFSET`` 0.1), as slide scanners that stitch fields without
  flat-field correction (12th session);
* ``stripes``: sCMOS row noise, every row offset by its own Gaussian draw (SD 0.5 % of the
  maximum, ``STRIPE_SD`` 0.005), plus 10 % of the maximum (12th
  session).
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

# strengths of the stripes and tiles conditions (environment variables, for a sweep)
STRIPE_SD = float(os.environ.get("STRIPE_SD", "0.005"))
TILE_GAIN = float(os.environ.get("TILE_GAIN", "0.4"))
TILE_OFFSET = float(os.environ.get("TILE_OFFSET", "0.1"))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_segment import bench_dsb  # noqa: E402


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
    if condition == "vignette":
        h, w = img.shape
        yy, xx = np.mgrid[:h, :w]
        r2 = ((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / (((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2)
        return (img * (1.0 - 0.6 * r2)).astype(np.float32), masks
    if condition == "gradient":
        w = img.shape[1]
        return (img + 0.5 * img.max() * np.arange(w)[None, :] / max(1, w - 1)).astype(np.float32), masks
    if condition == "blur":
        from scipy import ndimage as ndi
        return ndi.gaussian_filter(img, 2.0).astype(np.float32), masks
    if condition == "gamma":
        top = max(1e-12, img.max())
        return (top * (np.clip(img, 0, None) / top) ** 0.5).astype(np.float32), masks
    if condition == "hot":
        out = img.copy()
        hot = rng.random(img.shape) < 1.0 / 2000
        out[hot] = 4.0 * img.max()
        return out.astype(np.float32), masks
    if condition == "jpeg":
        import io

        from PIL import Image
        lo, hi = img.min(), max(img.max(), img.min() + 1e-12)
        u8 = np.round(255 * (img - lo) / (hi - lo)).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="JPEG", quality=70)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue()))).astype(np.uint8), masks
    if condition == "tiles":
        h, w = img.shape
        out = img.copy()
        top = img.max()
        for y0 in range(0, h, 128):
            for x0 in range(0, w, 128):
                gain = rng.uniform(1 - TILE_GAIN, 1 + TILE_GAIN)
                out[y0:y0 + 128, x0:x0 + 128] = img[y0:y0 + 128, x0:x0 + 128] * gain + rng.uniform(0.0, TILE_OFFSET) * top
        return out.astype(np.float32), masks
    if condition == "stripes":
        h = img.shape[0]
        rows = STRIPE_SD * img.max() * rng.standard_normal(h)[:, None]
        return (img + rows + 0.1 * img.max()).astype(np.float32), masks
    raise ValueError(f"unknown condition {condition!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("condition", help="none, offset, pad, sat, noise200, noise50, rot90, flip, vignette, gradient, "
                                      "blur, gamma, hot, jpeg, tiles, stripes")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)  # one generator over the images in the manifest's order
    try:
        bench_dsb(a.verbose, transform=lambda img, masks: transform(a.condition, img, masks, rng),
                  label=a.condition)
    except ValueError as exc:
        ap.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
