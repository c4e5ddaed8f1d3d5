"""Identity check for speed work: hashes of segmentation and analysis outputs on a fixed set of fields.

Run it with the code before and after a change and compare::

    PYTHONPATH=/path/to/old OMP_NUM_THREADS=1 python benchmarks/check_identical.py --out /tmp/old.json
    PYTHONPATH=/path/to/new OMP_NUM_THREADS=1 python benchmarks/check_identical.py --out /tmp/new.json \\
        --compare /tmp/old.json

What is hashed (labels bit for bit; floats of the tables rounded to 1e-6):

* ``segment_nuclei`` labels + QC table of simulated fields: ``simulate_field("del5q", (1024, 1024),
  seed=s)`` for s = 0..4 and ``(768, 768)`` at 0.16/0.11/0.22 µm/px for s = 100..105, each with and
  without the pixel size;
* the 40 DSB2018 dev images and the StarDist sample (``../shared/data``), no pixel size;
* the dense synthetic fields of ``bench_segment.py speed`` (with and without the pixel size);
* ``analyze_field`` nuclei + spots tables (and labels) of the 18 fields under ``sample_images/``.

``--quick`` skips the 2048² synthetic fields and the sample_images analyses.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def _hash_array(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha1(str((a.dtype.str, a.shape)).encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def _hash_table(df: pd.DataFrame) -> str:
    """Hash of a table with floats rounded to 1e-6 (column names, order, dtypes and index included)."""
    h = hashlib.sha1(str((list(df.columns), [str(t) for t in df.dtypes], list(df.index))).encode())
    for c in df.columns:
        v = df[c]
        if pd.api.types.is_float_dtype(v):
            arr = np.round(v.to_numpy(np.float64), 6) + 0.0  # -0.0 -> 0.0
            h.update(arr.tobytes())
        else:
            h.update(pd.util.hash_pandas_object(v.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def _seg_entry(img: np.ndarray, pix: float | None) -> dict:
    from fishcount.segment import segment_nuclei

    seg = segment_nuclei(img, pixel_size_um=pix)
    return {"labels": _hash_array(seg.labels), "qc": _hash_table(seg.qc), "n": int(seg.labels.max())}


def run(quick: bool = False) -> dict[str, dict]:
    import tifffile

    import fishcount
    from fishcount.simulate import simulate_field

    out: dict[str, dict] = {}
    for s in range(5):
        sim = simulate_field("del5q", shape=(1024, 1024), seed=s)
        for pix in (sim.pixel_size_um, None):
            out[f"sim1024_s{s}_{'pix' if pix else 'nopix'}"] = _seg_entry(sim.image[0], pix)
    for s in range(100, 106):
        pix = (0.16, 0.11, 0.22)[s % 3]
        sim = simulate_field("del5q", shape=(768, 768), pixel_size_um=pix, seed=s)
        for p in (pix, None):
            out[f"sim768_s{s}_{'pix' if p else 'nopix'}"] = _seg_entry(sim.image[0], p)
    for f in sorted((DATA / "dsb2018_fluo_dev" / "images").glob("*.tif")):
        out[f"dsb_{f.stem[:12]}"] = _seg_entry(tifffile.imread(f), None)
    out["stardist_img2d"] = _seg_entry(tifffile.imread(DATA / "stardist_nuclei_sample" / "img2d.tif"), None)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_segment import _synthetic_field

    for size, pix in ((1024, 0.1), (2048, 0.1), (1024, 0.16), (2048, 0.16), (2048, 0.2)):
        if quick and size > 1024:
            continue
        img = _synthetic_field(size, 9.0 / pix, 0)
        for p in (pix, None):
            out[f"speed{size}_{pix}_{'pix' if p else 'nopix'}"] = _seg_entry(img, p)
    if not quick:
        for f in sorted((REPO / "sample_images").rglob("field*.ome.tif")):
            res = fishcount.analyze_field(f, panel="del5q")
            key = "sample_" + "_".join(f.relative_to(REPO / "sample_images").with_suffix("").with_suffix("").parts)
            out[key] = {"labels": _hash_array(res.labels), "nuclei": _hash_table(res.nuclei),
                        "spots": _hash_table(res.spots), "n": int(len(res.nuclei))}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write the hashes to")
    ap.add_argument("--compare", type=Path, help="JSON of a previous run to compare with")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    import fishcount

    t0 = time.perf_counter()
    res = run(a.quick)
    a.out.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    print(f"{len(res)} entries from {Path(fishcount.__file__).parent} in {time.perf_counter() - t0:.0f} s "
          f"-> {a.out}")
    if a.compare:
        old = json.loads(a.compare.read_text())
        common = sorted(set(old) & set(res))
        diff = [k for k in common if old[k] != res[k]]
        missing = sorted(set(old) ^ set(res))
        for k in diff:
            print(f"DIFFERENT {k}: {old[k]} != {res[k]}")
        if missing:
            print(f"not in both: {missing}")
        print(f"{len(common) - len(diff)} / {len(common)} identical")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
