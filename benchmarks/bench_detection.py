"""Detection benchmark: fishcount vs Big-FISH on simulated marrow fields, real spots, throughput.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_detection.py [--fields 5] [--bigfish-python /tmp/bfvenv/bin/python]
                                                   [--out benchmarks/results/detection.json] [--quick]

Big-FISH (``big-fish-reloaded`` from PyPI) is never a fishcount dependency: it is imported in this
interpreter when available, otherwise run in ``--bigfish-python`` (a separate venv with
``pip install big-fish-reloaded``) through this same file's ``--worker`` mode.

What is measured (results and commands: docs/benchmarks.md, section Detection):

1. Simulated del(5q) marrow fields (``fishcount.simulate_field`` defaults: touching and lobulated nuclei,
   split, dim and defocused signals, debris, uneven illumination), 1024 x 1024, one seed per field.
   * fishcount, whole pipeline with its own segmentation: exact per-nucleus count accuracy on scorable
     nuclei matched to a true nucleus (IoU >= 0.5); fraction of true interior nuclei scorable; clone %
     (tracked calls among scorable nuclei) of the pooled sample vs the true clone %.
   * fishcount detection alone (true nucleus masks): the same accuracy.
   * Big-FISH ``detect_spots`` with its automatic (elbow) threshold, spots counted inside the *true*
     nucleus masks (no split rule, as Big-FISH gives it; and with fishcount's split rule applied), on
     the same nuclei.
   * Time: Big-FISH ``detect_spots`` over the probe channels vs fishcount's whole ``analyze_field``
     (segmentation included; output writing excluded), one thread each; the two alternate
     ``--timing-rounds`` times (default 5) and the fastest round of each is kept (the shared machine's
     wall-clock times vary by +-20 % between rounds). The split of fishcount's time into segmentation and
     detection + calls comes from the first round.
2. Sparse fields (6 nuclei in 512², true masks): fishcount's counts (every eligible nucleus, its exclusion
   rules ignored) vs Big-FISH's, where an elbow threshold is documented to be fragile.
3. Real spots (``../shared/data/spotmax_spots``): detection F1 (match radius 3 px, one-to-one) against the
   label centroids, fishcount's automatic threshold without nuclei, and Big-FISH's.
4. Throughput of ``analyze_field`` on 1024² and 2048² three-channel fields: fields/s, nuclei/s and peak
   traced memory (``tracemalloc``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


# -------------------------------------------------------------------------------------------
# Big-FISH worker (runs in any interpreter with numpy + bigfish; no fishcount import)
# -------------------------------------------------------------------------------------------
def _bigfish_detect(img: np.ndarray, px_nm: float, sigma_nm: float) -> tuple[np.ndarray, float, float]:
    import bigfish.detection as detection

    t = time.perf_counter()
    spots, threshold = detection.detect_spots(
        img, threshold=None, remove_duplicate=True, return_threshold=True,
        voxel_size=(px_nm, px_nm), spot_radius=(sigma_nm, sigma_nm),
    )
    return np.asarray(spots, np.float64).reshape(-1, 2), float(threshold), time.perf_counter() - t


def worker(job: Path) -> None:
    spec = json.loads(job.read_text())
    out = []
    for item in spec["images"]:
        img = np.load(item["path"])
        spots, th, dt = _bigfish_detect(img, spec["px_nm"] if "px_nm" not in item else item["px_nm"],
                                        item.get("sigma_nm", spec.get("sigma_nm")))
        np.save(item["path"] + ".spots.npy", spots)
        out.append({"path": item["path"], "threshold": th, "seconds": dt, "n": int(len(spots))})
    Path(spec["result"]).write_text(json.dumps(out))


def run_bigfish(items: list[dict], px_nm: float, bigfish_python: str | None) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.json"
        res = Path(tmp) / "res.json"
        spec = [{k: v for k, v in it.items() if k in ("path", "sigma_nm", "px_nm")} for it in items]
        job.write_text(json.dumps({"images": spec, "px_nm": px_nm, "result": str(res)}))
        try:
            import bigfish.detection  # noqa: F401

            worker(job)
        except ImportError:
            if not bigfish_python:
                raise SystemExit("Big-FISH is not importable here: pass --bigfish-python (a venv with big-fish-reloaded)")
            subprocess.run([bigfish_python, __file__, "--worker", str(job)], check=True,
                           env={**os.environ, "PYTHONPATH": ""})
        out = json.loads(res.read_text())
        for o in out:
            o["spots"] = np.load(o["path"] + ".spots.npy")
        return out


# -------------------------------------------------------------------------------------------
# helpers
# -------------------------------------------------------------------------------------------
def match_labels(true: np.ndarray, pred: np.ndarray) -> dict[int, int]:
    """Predicted label -> true label with IoU >= 0.5 (unique by construction)."""
    m = (true > 0) & (pred > 0)
    u, c = np.unique(np.stack([pred[m], true[m]], 1), axis=0, return_counts=True)
    pa, ta = np.bincount(pred.ravel()), np.bincount(true.ravel())
    iou = c / (pa[u[:, 0]] + ta[u[:, 1]] - c)
    return {int(p): int(t) for (p, t), ok in zip(u, iou >= 0.5) if ok}


def f1_at(pred: np.ndarray, gt: np.ndarray, radius: float = 3.0) -> dict:
    from scipy.optimize import linear_sum_assignment

    if len(pred) == 0 or len(gt) == 0:
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0, "n_pred": int(len(pred)), "n_true": int(len(gt))}
    d = np.hypot(*(pred[:, None, :] - gt[None, :, :]).transpose(2, 0, 1))
    r, c = linear_sum_assignment(np.where(d <= radius, d, 1e6))
    tp = int((d[r, c] <= radius).sum())
    p, rc = tp / len(pred), tp / len(gt)
    return {"f1": 2 * tp / (len(pred) + len(gt)), "precision": p, "recall": rc, "n_pred": int(len(pred)),
            "n_true": int(len(gt))}


def probe_items(sims: list, panel, folder: Path, prefix: str) -> list[dict]:
    """Save every probe channel of the simulated fields as ``.npy`` for the Big-FISH worker; one item per
    (field, signal) with the spot sigma in nm from the panel's signal diameter."""
    from fishcount.spots import spot_sigma_px

    items = []
    for k, sim in enumerate(sims):
        sigma_nm = spot_sigma_px(panel.signal_diameter_um, sim.pixel_size_um) * sim.pixel_size_um * 1000
        for ci, name in enumerate(sim.channel_names[1:], start=1):
            p = str(folder / f"{prefix}{k}_{name}.npy")
            np.save(p, np.ascontiguousarray(sim.image[ci]))
            items.append({"path": p, "field": k, "signal": name, "sigma_nm": sigma_nm})
    return items


def true_segmentation(sim):
    import pandas as pd
    from skimage.measure import regionprops_table

    from fishcount.segment import Segmentation

    t = regionprops_table(sim.labels, properties=("label", "centroid", "area"))
    tr = sim.truth.set_index("label")
    ok = ~tr.loc[t["label"], "border"].to_numpy() & ~tr.loc[t["label"], "out_of_focus"].to_numpy()
    qc = pd.DataFrame({"label": t["label"], "centroid_y": t["centroid-0"], "centroid_x": t["centroid-1"],
                       "area_um2": t["area"] * sim.pixel_size_um**2, "scorable": ok,
                       "exclusion_reason": np.where(ok, "", "border_or_out_of_focus")})
    return Segmentation(labels=sim.labels, qc=qc, pixel_size_um=sim.pixel_size_um, diameter_px=float("nan"),
                        diameter_source="truth")


# -------------------------------------------------------------------------------------------
# benchmarks
# -------------------------------------------------------------------------------------------
def bench_simulated(n_fields: int, bigfish_python: str | None, shape=(1024, 1024), repeats: int = 5) -> dict:
    import pandas as pd

    import fishcount as fc
    from fishcount.io import field_from_arrays
    from fishcount.spots import merge_split_signals

    panel = fc.load_panel("del5q")
    keys = [f"count_{s}" for s in panel.signal_names]
    tracked = set(panel.tracked_calls)
    rows_pipe, rows_det, rows_bf, rows_bf_split = [], [], [], []
    t_fc, t_bf, t_fc_detect, t_fc_segment = 0.0, 0.0, 0.0, 0.0
    t_fc_rounds: list[float] = []
    n_interior = n_scorable_true = 0
    clone_true, clone_pipe = [0, 0], [0, 0]
    bf_thresholds = []
    with tempfile.TemporaryDirectory() as tmp:
        sims = []
        for seed in range(n_fields):
            sim = fc.simulate_field(panel, shape=shape, seed=seed)
            sims.append(sim)
        items = probe_items(sims, panel, Path(tmp), "f")
        px_nm = sims[0].pixel_size_um * 1000
        bf = run_bigfish(items, px_nm, bigfish_python)
        for it, b in zip(items, bf):
            it.update(b)
            t_bf += b["seconds"]
            bf_thresholds.append(b["threshold"])
        fields = []
        for k, sim in enumerate(sims):
            d = {n: sim.image[i] for i, n in enumerate(sim.channel_names)}
            fields.append(field_from_arrays(d.pop("DAPI"), d, sim.pixel_size_um, panel=panel, name=f"f{k}"))
        # timing: Big-FISH and fishcount alternate `repeats` times and the fastest round of each counts,
        # so that a change of machine load between the two does not decide the ratio
        for _ in range(repeats - 1):
            t_bf = min(t_bf, sum(b["seconds"] for b in run_bigfish(items, px_nm, bigfish_python)))
            t0 = time.perf_counter()
            for fld in fields:
                fc.analyze_field(fld, panel)
            t_fc_best = time.perf_counter() - t0
            t_fc_rounds.append(t_fc_best)

        for k, sim in enumerate(sims):
            truth = sim.truth.set_index("label")
            interior = truth[~truth.border]
            n_interior += len(interior)
            fld = fields[k]
            t0 = time.perf_counter()
            res = fc.analyze_field(fld, panel)
            t_fc += time.perf_counter() - t0
            t_fc_detect += res.params["timings"]["detect_s"] + res.params["timings"]["call_s"]
            t_fc_segment += res.params["timings"]["segment_s"]
            nuc = res.nuclei.copy()
            nuc["true"] = nuc.label.map(match_labels(sim.labels, res.labels))
            sc = nuc[nuc.scorable & nuc.true.notna()]
            ok = (sc[keys].to_numpy() == truth.loc[sc.true.astype(int), keys].to_numpy()).all(1)
            rows_pipe.append(ok)
            n_scorable_true += int(sc.true.isin(interior.index).sum())
            clone_pipe[0] += int(nuc[nuc.scorable].call.isin(tracked).sum())
            clone_pipe[1] += int(nuc.scorable.sum())
            clone_true[0] += int(interior.call.isin(tracked).sum())
            clone_true[1] += len(interior)

            seg = true_segmentation(sim)
            det = fc.analyze_field(fld, panel, segmentation=seg).nuclei.set_index("label")
            dsc = det[det.scorable]
            rows_det.append((dsc[keys].to_numpy() == truth.loc[dsc.index, keys].to_numpy()).all(1))

            # Big-FISH: spots counted inside the true masks, on the same eligible nuclei as above
            eligible = seg.qc.loc[seg.qc.scorable, "label"].to_numpy()
            counts, counts_split = {}, {}
            frames = []
            for it in items:
                if it["field"] != k:
                    continue
                sp = it["spots"]
                yi = np.clip(np.rint(sp[:, 0]).astype(int), 0, shape[0] - 1)
                xi = np.clip(np.rint(sp[:, 1]).astype(int), 0, shape[1] - 1)
                lab = sim.labels[yi, xi]
                counts[it["signal"]] = np.bincount(lab, minlength=sim.labels.max() + 1)
                frames.append(pd.DataFrame({"label": lab, "signal": it["signal"], "y": sp[:, 0], "x": sp[:, 1],
                                            "snr": np.ones(len(sp))}))
            merged = merge_split_signals(pd.concat(frames, ignore_index=True), split_distance_um=panel.split_distance_um,
                                         pixel_size_um=sim.pixel_size_um)
            for s in panel.signal_names:
                m = (merged.counts_as == s).to_numpy()
                counts_split[s] = np.bincount(merged.label.to_numpy()[m], minlength=sim.labels.max() + 1)
            tv = truth.loc[eligible, keys].to_numpy()
            bfv = np.stack([counts[s][eligible] for s in panel.signal_names], 1)
            bfs = np.stack([counts_split[s][eligible] for s in panel.signal_names], 1)
            # Big-FISH has no exclusion rules: score it on the nuclei it leaves countable (>= 1 per colour)
            rows_bf.append((bfv == tv).all(1))
            rows_bf_split.append((bfs == tv).all(1))

    t_fc = min([t_fc, *t_fc_rounds])
    acc = lambda rows: float(np.concatenate(rows).mean())  # noqa: E731
    n = lambda rows: int(sum(len(r) for r in rows))  # noqa: E731
    return {
        "fields": n_fields, "shape": list(shape), "panel": "del5q", "true_interior_nuclei": n_interior,
        "fishcount_pipeline": {"accuracy": acc(rows_pipe), "n_scorable_matched": n(rows_pipe),
                               "fraction_true_interior_scorable": n_scorable_true / n_interior,
                               "clone_pct": 100 * clone_pipe[0] / max(1, clone_pipe[1]),
                               "true_clone_pct": 100 * clone_true[0] / clone_true[1],
                               "seconds": t_fc, "seconds_segmentation": t_fc_segment,
                               "seconds_detection_and_calls": t_fc_detect},
        "fishcount_detection_true_masks": {"accuracy": acc(rows_det), "n_scorable": n(rows_det)},
        "bigfish_true_masks": {"accuracy": acc(rows_bf), "accuracy_with_split_rule": acc(rows_bf_split),
                               "n_nuclei": n(rows_bf), "seconds": t_bf,
                               "thresholds": [round(v, 1) for v in bf_thresholds]},
        "timing_rounds": repeats,
        "time_ratio_fishcount_over_bigfish": t_fc / t_bf,
        "time_ratio_fishcount_detection_over_bigfish": t_fc_detect / t_bf,
    }


def bench_sparse(bigfish_python: str | None, n_fields: int = 6) -> dict:
    """Sparse fields (6 nuclei in 512², ~12-20 signals per channel): both detectors on the true masks."""
    import fishcount as fc
    from fishcount.io import field_from_arrays

    panel = fc.load_panel("del5q")
    keys = [f"count_{s}" for s in panel.signal_names]
    sims = [fc.simulate_field(panel, shape=(512, 512), seed=s, n_nuclei=6) for s in range(n_fields)]
    fc_ok, bf_ok, bf_th, fc_th = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        items = probe_items(sims, panel, Path(tmp), "s")
        bf = run_bigfish(items, sims[0].pixel_size_um * 1000, bigfish_python)
        for k, sim in enumerate(sims):
            d = {n: sim.image[i] for i, n in enumerate(sim.channel_names)}
            fld = field_from_arrays(d.pop("DAPI"), d, sim.pixel_size_um, panel=panel, name=f"s{k}")
            seg = true_segmentation(sim)
            truth = sim.truth.set_index("label")
            eligible = seg.qc.loc[seg.qc.scorable, "label"].to_numpy()
            res = fc.analyze_field(fld, panel, segmentation=seg)
            fc_th += list(res.thresholds.values())
            nuc = res.nuclei.set_index("label").loc[eligible]
            fc_ok.append((nuc[keys].to_numpy() == truth.loc[eligible, keys].to_numpy()).all(1))
            counts = []
            for it, b in zip(items, bf):
                if it["field"] != k:
                    continue
                bf_th.append(b["threshold"])
                sp = b["spots"]
                yi = np.clip(np.rint(sp[:, 0]).astype(int), 0, 511)
                xi = np.clip(np.rint(sp[:, 1]).astype(int), 0, 511)
                counts.append(np.bincount(sim.labels[yi, xi], minlength=sim.labels.max() + 1)[eligible])
            bf_ok.append((np.stack(counts, 1) == truth.loc[eligible, keys].to_numpy()).all(1))
    return {"fields": n_fields, "n_nuclei": int(sum(len(o) for o in fc_ok)),
            "fishcount_accuracy_all_eligible": float(np.concatenate(fc_ok).mean()),
            "bigfish_accuracy": float(np.concatenate(bf_ok).mean()),
            "fishcount_thresholds": [round(v, 1) for v in fc_th], "bigfish_thresholds": [round(v, 1) for v in bf_th]}


def bench_spotmax(bigfish_python: str | None) -> dict:
    import pandas as pd
    import tifffile

    from fishcount.spots import detect_signals, spot_sigma_px

    folder = SHARED / "spotmax_spots"
    img = tifffile.imread(folder / "single_image.tiff")
    gt = pd.read_csv(folder / "spot_centroids_from_labels.csv")[["y", "x"]].to_numpy(np.float64)
    px = 0.07206  # µm, from spotmax/nnet/_predict_single_image.py (SOURCE.md)
    diam = 0.3    # µm: the labelled spots are discs of ~13-29 px (diameter ~4-6 px ~ 0.3-0.4 µm)
    t0 = time.perf_counter()
    sig, th = detect_signals(img, pixel_size_um=px, signal_diameter_um=diam)
    t_fc = time.perf_counter() - t0
    out = {"fishcount": {**f1_at(sig[["y", "x"]].to_numpy(), gt), "threshold": th, "seconds": t_fc}}
    with tempfile.TemporaryDirectory() as tmp:
        p = str(Path(tmp) / "spotmax.npy")
        np.save(p, img)
        sigma_nm = spot_sigma_px(diam, px) * px * 1000
        b = run_bigfish([{"path": p, "sigma_nm": sigma_nm}], px * 1000, bigfish_python)[0]
    out["bigfish"] = {**f1_at(b["spots"], gt), "threshold": b["threshold"], "seconds": b["seconds"]}
    out["diameter_um"], out["pixel_size_um"] = diam, px
    return out


def bench_throughput(sizes=(1024, 2048), repeats: int = 2) -> dict:
    import tracemalloc

    import fishcount as fc
    from fishcount.io import field_from_arrays

    out = {}
    for s in sizes:
        sim = fc.simulate_field("del5q", shape=(s, s), seed=100 + s)
        d = {n: sim.image[i] for i, n in enumerate(sim.channel_names)}
        fld = field_from_arrays(d.pop("DAPI"), d, sim.pixel_size_um, name=f"t{s}")
        fc.analyze_field(fld)  # warm-up (imports)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = fc.analyze_field(fld)
            times.append(time.perf_counter() - t0)
        tracemalloc.start()
        fc.analyze_field(fld)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        t = min(times)
        out[f"{s}x{s}"] = {"seconds_per_field": t, "fields_per_s": 1 / t, "nuclei": int(len(res.nuclei)),
                           "nuclei_per_s": len(res.nuclei) / t, "peak_traced_MiB": peak / 2**20,
                           "timings": {k: round(v, 3) for k, v in res.params["timings"].items()}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--fields", type=int, default=5, help="simulated 1024² fields (5 give > 500 interior nuclei)")
    ap.add_argument("--bigfish-python", default=os.environ.get("BIGFISH_PYTHON"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "detection.json")
    ap.add_argument("--quick", action="store_true", help="1 field, no 2048² throughput")
    ap.add_argument("--timing-rounds", type=int, default=5,
                    help="Big-FISH / fishcount timing rounds, alternating; the fastest of each counts")
    a = ap.parse_args()
    if a.timing_rounds < 1:
        ap.error("--timing-rounds must be at least 1")
    if a.worker:
        worker(a.worker)
        return
    res = {"simulated": bench_simulated(1 if a.quick else a.fields, a.bigfish_python,
                                            repeats=a.timing_rounds)}
    print(json.dumps(res["simulated"], indent=1), flush=True)
    res["sparse"] = bench_sparse(a.bigfish_python)
    print(json.dumps(res["sparse"], indent=1), flush=True)
    res["spotmax"] = bench_spotmax(a.bigfish_python)
    print(json.dumps(res["spotmax"], indent=1), flush=True)
    res["throughput"] = bench_throughput((1024,) if a.quick else (1024, 2048))
    print(json.dumps(res["throughput"], indent=1), flush=True)
    from fishcount._atomic import write_text_atomic

    write_text_atomic(a.out, json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
