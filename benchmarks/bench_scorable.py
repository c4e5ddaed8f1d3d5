"""Whole-pipeline scorable fraction on simulated fields, with the same definitions as
``bench_detection.bench_simulated`` (fishcount only, no Big-FISH, no timing), and why true nuclei are lost.

Usage (repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scorable.py 0 10     # seeds 0..9
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scorable.py dsb      # QC flags on DSB2018 dev

Prints, for seeds lo..hi-1 and for the first half of them: exact per-nucleus count accuracy on scorable
nuclei matched to a true nucleus (IoU >= 0.5), the share of true interior nuclei that are scorable and
matched, clone % vs the truth, and for the matched true interior nuclei that are excluded: each reason
with how many of them would have been counted right (the accuracy an exclusion rule gives up).

``dsb``: on the 40 DSB2018 dev images (no pixel size), the non-border predicted objects holding >= 2 true
nuclei (>= 50 % of each inside) vs exactly 1, and how many of each get ``clump`` / any segmentation reason.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fishcount as fc  # noqa: E402
from bench_detection import match_labels  # noqa: E402
from fishcount.io import field_from_arrays  # noqa: E402


def export_channel(a: np.ndarray, how: str | None) -> np.ndarray:
    """A simulated 16-bit channel as another acquisition or export would store it: ``"uint8"`` (linear
    min-max to 0-255, as an 8-bit export), ``"uint8_stretch"`` (1st-99.5th percentile to 0-255, clipped:
    a contrast-stretched 8-bit export whose brightest pixels saturate), ``"float01"`` (float32 / 65535);
    None: unchanged."""
    if how is None:
        return a
    f = a.astype(np.float64)
    if how == "uint8":
        return np.round((f - f.min()) / max(f.max() - f.min(), 1e-12) * 255).astype(np.uint8)
    if how == "uint8_stretch":
        lo, hi = np.percentile(f, [1.0, 99.5])
        return np.clip(np.round((f - lo) / max(hi - lo, 1e-12) * 255), 0, 255).astype(np.uint8)
    if how == "float01":
        return (f / 65535.0).astype(np.float32)
    if how.startswith("jpeg"):  # "jpeg90": the contrast-stretched 8-bit channel as a grey JPEG of quality 90
        return _jpeg_roundtrip(export_channel(a, "uint8_stretch"), int(how[4:]))
    raise ValueError(f"unknown export {how!r}")


def _jpeg_roundtrip(u8: np.ndarray, quality: int, **save) -> np.ndarray:
    """``u8`` (Y, X) or (Y, X, 3) saved as a JPEG of ``quality`` (Pillow's defaults: 4:2:0 chroma
    subsampling for colour) and decoded again by Pillow, as fishcount's reader decodes a JPEG."""
    import io as _bytes_io

    from PIL import Image
    buf = _bytes_io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=quality, **save)
    with Image.open(_bytes_io.BytesIO(buf.getvalue())) as im:
        return np.asarray(im).copy()


def rgb_composite_jpeg(channels: list[np.ndarray], quality: int) -> list[np.ndarray]:
    """Three 16-bit channels (red, green, blue order) as one contrast-stretched 8-bit RGB composite JPEG
    (4:2:0, as most exports), read back as its red, green and blue planes."""
    rgb = np.stack([export_channel(c, "uint8_stretch") for c in channels], -1)
    dec = _jpeg_roundtrip(rgb, quality)
    return [dec[..., k] for k in range(3)]


def field_rows(seed: int, panel, shape=(1024, 1024), give_pixel: bool = True, export: str | None = None,
               analyze_params: dict | None = None, **sim_kwargs) -> dict:
    """One simulated field through ``analyze_field``; ``sim_kwargs`` go to ``simulate_field``,
    ``give_pixel=False`` hides the pixel size from the pipeline (the scale then comes from the nuclei),
    ``export`` stores every channel another way first (:func:`export_channel`) and ``analyze_params`` go to
    ``analyze_field``."""
    keys = [f"count_{k}" for k in panel.pattern_keys]
    sim = fc.simulate_field(panel, shape=shape, seed=seed, **sim_kwargs)
    if export is not None and export.startswith("rgb_jpeg"):  # DAPI blue, first probe red, second green
        names = list(sim.channel_names)
        r, g, b = rgb_composite_jpeg([sim.image[1], sim.image[2], sim.image[0]], int(export[8:]))
        d = {names[1]: r, names[2]: g, names[0]: b}
    else:
        d = {n: export_channel(sim.image[i], export) for i, n in enumerate(sim.channel_names)}
    fld = field_from_arrays(d.pop("DAPI"), d, sim.pixel_size_um if give_pixel else None, panel=panel,
                            name=f"f{seed}")
    t0 = time.process_time()
    res = fc.analyze_field(fld, panel, **(analyze_params or {}))
    cpu = time.process_time() - t0
    truth = sim.truth.set_index("label")
    interior = truth[~truth.border]
    nuc = res.nuclei.copy()
    nuc["true"] = nuc.label.map(match_labels(sim.labels, res.labels))
    matched = nuc[nuc.true.notna()]
    right = (matched[keys].to_numpy() == truth.loc[matched.true.astype(int), keys].to_numpy()).all(1)
    inner = matched.true.astype(int).isin(interior.index).to_numpy()
    tracked = set(panel.tracked_calls)
    return {"scorable": matched.scorable.to_numpy(), "right": right, "inner": inner,
            "reason": matched.exclusion_reason.to_numpy(), "n_interior": len(interior),
            "n_unmatched": len(set(interior.index) - set(matched.true.astype(int))),
            "unmatched_scorable": int((nuc.true.isna() & nuc.scorable).sum()), "cpu": cpu,
            "clone": (int(nuc[nuc.scorable].call.isin(tracked).sum()), int(nuc.scorable.sum())),
            "clone_true": (int(interior.call.isin(tracked).sum()), len(interior)),
            "warned": bool(res.params.get("warnings"))}


def summary(rows: list[dict]) -> str:
    sc = np.concatenate([r["scorable"] for r in rows])
    right = np.concatenate([r["right"] for r in rows])
    inner = np.concatenate([r["inner"] for r in rows])
    reason = np.concatenate([r["reason"] for r in rows])
    n_int = sum(r["n_interior"] for r in rows)
    clone = 100 * sum(r["clone"][0] for r in rows) / max(1, sum(r["clone"][1] for r in rows))
    clone_t = 100 * sum(r["clone_true"][0] for r in rows) / sum(r["clone_true"][1] for r in rows)
    acc = right[sc].mean()
    out = [f"accuracy {acc:.4f} ({sc.sum()} scorable matched, {(~right[sc]).sum()} wrong); true interior nuclei "
           f"scorable and matched {100 * (sc & inner).sum() / n_int:.1f} % of {n_int} "
           f"({sum(r['n_unmatched'] for r in rows)} not matched); clone {clone:.1f} % vs true {clone_t:.1f} "
           f"({clone - clone_t:+.1f})",
           "  excluded matched interior nuclei, by reason: n (would have been counted right)"]
    ex = ~sc & inner
    tokens: dict[str, list[bool]] = {}
    for rs, ok in zip(reason[ex], right[ex]):
        for t in set(rs.split(";")):
            tokens.setdefault(t, []).append(bool(ok))
    for t, oks in sorted(tokens.items(), key=lambda kv: -len(kv[1])):
        out.append(f"    {t:22s} {len(oks):4d} ({sum(oks)} right)")
    only = {}
    for rs, ok in zip(reason[ex], right[ex]):
        only.setdefault(rs, []).append(bool(ok))
    out.append("  ... by exact reason string: " + ", ".join(f"{k} {len(v)} ({sum(v)})" for k, v in
                                                        sorted(only.items(), key=lambda kv: -len(kv[1]))))
    return "\n".join(out)


def held_counts(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per predicted label, the number of true nuclei with >= 50 % of their pixels inside it."""
    m = (true > 0) & (pred > 0)
    u, c = np.unique(np.stack([pred[m], true[m]], 1), axis=0, return_counts=True)
    at = np.bincount(true.ravel())
    return np.bincount(u[c >= 0.5 * at[u[:, 1]], 0], minlength=int(pred.max()) + 1)


def dsb_flags() -> None:
    import csv

    import tifffile

    from fishcount.segment import segment_nuclei

    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsb2018_fluo_dev"
    with open(root / "manifest.csv") as fh:
        ids = [r["id"] for r in csv.DictReader(fh)]
    tot = np.zeros(6, np.int64)
    for i in ids:
        gt = tifffile.imread(root / "masks" / f"{i}.tif")
        seg = segment_nuclei(tifffile.imread(root / "images" / f"{i}.tif"))
        qc = seg.qc[~seg.qc.touches_border]
        h = held_counts(gt, seg.labels)[qc.label.to_numpy()]
        clump = qc.exclusion_reason.str.contains("clump").to_numpy()
        seg_any = (qc.exclusion_reason != "").to_numpy()
        tot += [(h >= 2).sum(), (h == 1).sum(), (clump & (h >= 2)).sum(), (clump & (h == 1)).sum(),
                (seg_any & (h >= 2)).sum(), (seg_any & (h == 1)).sum()]
    print(f"DSB2018 dev, {len(ids)} images, non-border objects: {tot[0]} hold >= 2 true nuclei, {tot[1]} hold 1; "
          f"clump: {tot[2]} / {tot[3]}; any segmentation reason: {tot[4]} / {tot[5]}")


def main() -> None:
    if sys.argv[1:2] == ["dsb"]:
        dsb_flags()
        return
    lo, hi = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (0, 10)
    panel = fc.load_panel("del5q")
    rows = [field_rows(s, panel) for s in range(lo, hi)]
    half = lo + (hi - lo + 1) // 2
    if hi - lo > 1:
        print(f"seeds {lo}-{half - 1}:\n" + summary(rows[: half - lo]))
    print(f"seeds {lo}-{hi - 1}:\n" + summary(rows))


if __name__ == "__main__":
    main()
