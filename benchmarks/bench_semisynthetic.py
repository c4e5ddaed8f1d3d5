"""Semi-synthetic benchmark: REAL nuclei (DSB2018 + StarDist sample) with synthetic FISH probe signals.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_semisynthetic.py [--images N] [-v]
        [--bigfish-python /tmp/bfvenv/bin/python] [--out benchmarks/results/semisynthetic.json]

Why: ``bench_detection.py`` uses only fishcount's own simulator, so it cannot tell whether the pipeline
generalises. Here the DAPI channel is a real nuclear-stain image with its real instance masks, and the two
del(5q) probe channels are drawn by a generative model written for this file alone (it does not import or
copy ``fishcount.simulate``; docs/detection.md, "Semi-synthetic benchmark"):

* scale: the pixel size is set so that the image's median true nucleus diameter (equivalent disc) is
  9 µm; an image coarser than ``--max-pixel-um`` (0.25 µm, FISH is imaged at 0.07-0.25 µm/px) is
  enlarged by the smallest integer factor that reaches it (DAPI bilinear, masks nearest), so that a
  0.8 µm signal spans a few pixels as in a real FISH image;
* per true nucleus a pattern of the del5q panel: normal 2 EGR1 + 2 D5S23, del5q 1 + 2, monosomy5 1 + 1
  (60 / 30 / 10 %); signal sites uniform inside the nucleus mask eroded by 0.6 µm (less for small
  nuclei), same-colour sites >= 2 signal diameters apart; a per-nucleus hybridisation efficiency
  (log-normal) times a per-signal brightness (log-normal), 10 % dim signals (0.3-0.5x);
* 10 % of signals are split: two sub-spots 0.3-0.8 signal diameters apart sharing its photons (count as
  one, the lab's split-signal rule);
* PSF: anisotropic Gaussian (FWHM 0.8-1.25 x the signal diameter, axis ratio 1-1.3, random orientation)
  plus a 15 % halo at 2.5 x the width (an Airy/defocus-like tail), evaluated at pixel centres;
* background: out-of-nucleus spots (0.002 / µm², >= 2 µm from every nucleus, same brightness law),
  a constant haze, and a smooth nuclear autofluorescence proportional to the (blurred) real DAPI image;
* camera: Poisson photon noise, gain 2 ADU/photon, offset 100 ADU, Gaussian read noise 3 ADU, uint16;
* chromatic shift: the D5S23 channel's spots are displaced by 1 px in a random direction per image.

Measured, over all images pooled (nuclei touching the image border excluded from the truth):

* whole pipeline (``fc.analyze_field``, own segmentation), with the pixel size given and without it
  (scale estimated): exact per-nucleus count accuracy on scorable nuclei matched to a true nucleus at
  IoU >= 0.5; fraction of true interior nuclei scorable and matched; clone % (del5q + monosomy5 among
  scorable) vs the true clone % of the interior nuclei;
* the same with the TRUE masks as segmentation;
* Big-FISH ``detect_spots`` (elbow threshold) counted in the true masks (with ``--bigfish-python``);
* an error breakdown (segmentation / exclusion / detection, see ``diagnose``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))

NUCLEUS_DIAMETER_UM = 9.0

#: The generative model's parameters (all physical; docs/detection.md "Semi-synthetic benchmark").
MODEL = {
    "pattern_fractions": {"normal": 0.6, "del5q": 0.3, "monosomy5": 0.1},
    "erode_um": 0.6,              # sites at least this far inside the nucleus mask (less in small nuclei)
    "min_sep_diameters": 2.0,     # same-colour sites at least this many signal diameters apart
    "split_fraction": 0.10,       # signals drawn as two sub-spots
    "split_sep_diameters": (0.3, 0.8),
    "dim_fraction": 0.10,
    "dim_factor": (0.3, 0.5),
    "photons_median": 1500.0,     # photons of a typical signal
    "photons_sigma": 0.35,        # log-normal spread per signal
    "nucleus_eff_sigma": 0.25,    # log-normal per-nucleus hybridisation efficiency
    "fwhm_factor": (0.8, 1.25),   # spot FWHM / signal diameter
    "axis_ratio": (1.0, 1.3),
    "halo_fraction": 0.15,
    "halo_width": 2.5,
    "background_spots_per_um2": 0.002,
    "background_min_dist_um": 2.0,
    "haze_photons": 25.0,         # constant background, photons / px
    "autofluor_photons": 40.0,    # nuclear autofluorescence at the DAPI 99th percentile, photons / px
    "gain_adu": 2.0,
    "offset_adu": 100.0,
    "read_noise_adu": 3.0,
    "chromatic_shift_px": 1.0,    # D5S23 spots displaced by this much (random direction per image)
}
PATTERNS = {"normal": (2, 2), "del5q": (1, 2), "monosomy5": (1, 1)}   # (EGR1, D5S23)


# -------------------------------------------------------------------------------------------
# data
# -------------------------------------------------------------------------------------------
def list_images() -> list[tuple[str, Path, Path]]:
    """(name, image path, mask path): the 40 DSB2018 dev images in manifest order, then StarDist's."""
    dsb = SHARED / "dsb2018_fluo_dev"
    ids = pd.read_csv(dsb / "manifest.csv")["id"].tolist()
    out = [(i[:8], dsb / "images" / f"{i}.tif", dsb / "masks" / f"{i}.tif") for i in ids]
    sd = SHARED / "stardist_nuclei_sample"
    if (sd / "img2d.tif").exists():
        out.append(("stardist", sd / "img2d.tif", sd / "mask2d.tif"))
    return out


def median_diameter_px(labels: np.ndarray) -> float:
    a = np.bincount(labels.ravel())[1:]
    a = a[a > 0]
    return float(np.median(2 * np.sqrt(a / np.pi)))


def prepare_image(dapi: np.ndarray, labels: np.ndarray, max_pixel_um: float = 0.25):
    """Pixel size from the median true nucleus diameter (9 µm) and, when coarser than ``max_pixel_um``,
    the image enlarged by the smallest integer factor reaching it. Returns (dapi, labels, px, factor)."""
    from scipy import ndimage as ndi

    px = NUCLEUS_DIAMETER_UM / median_diameter_px(labels)
    k = max(1, math.ceil(px / max_pixel_um - 1e-9)) if max_pixel_um > 0 else 1
    if k > 1:
        dapi = ndi.zoom(dapi.astype(np.float32), k, order=1, mode="nearest", grid_mode=True)
        labels = np.repeat(np.repeat(labels, k, 0), k, 1)
    return dapi.astype(np.float32), labels.astype(np.int32), px / k, k


# -------------------------------------------------------------------------------------------
# the generative model (independent of fishcount.simulate)
# -------------------------------------------------------------------------------------------
def _place_sites(rng, coords: np.ndarray, n: int, min_sep_px: float, tries: int = 300) -> np.ndarray:
    """Up to ``n`` points uniform over the pixels ``coords`` (+ sub-pixel jitter), pairwise >= min_sep_px."""
    pts: list[np.ndarray] = []
    for _ in range(tries):
        if len(pts) == n:
            break
        p = coords[rng.integers(len(coords))] + rng.uniform(-0.5, 0.5, 2)
        if all(np.hypot(*(p - q)) >= min_sep_px for q in pts):
            pts.append(p)
    return np.array(pts).reshape(-1, 2)


def _render(lam: np.ndarray, y: float, x: float, photons: float, sy: float, sx: float, theta: float,
            halo_fraction: float, halo_width: float) -> None:
    """Add one spot (anisotropic Gaussian core + isotropic Gaussian halo, normalised to ``photons``)."""
    r = int(math.ceil(4 * max(sy, sx) * (halo_width if halo_fraction > 0 else 1)))
    y0, y1 = max(0, int(y) - r), min(lam.shape[0], int(y) + r + 2)
    x0, x1 = max(0, int(x) - r), min(lam.shape[1], int(x) + r + 2)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - y, xx - x
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * dy + s * dx, -s * dy + c * dx
    core = np.exp(-0.5 * ((u / sy) ** 2 + (v / sx) ** 2)) / (2 * math.pi * sy * sx)
    out = (1 - halo_fraction) * core
    if halo_fraction > 0:
        sh = halo_width * math.sqrt(sy * sx)
        out = out + halo_fraction * np.exp(-0.5 * (dy**2 + dx**2) / sh**2) / (2 * math.pi * sh**2)
    lam[y0:y1, x0:x1] += photons * out


def generate_probes(dapi: np.ndarray, labels: np.ndarray, pixel_size_um: float, rng: np.random.Generator,
                    *, signal_diameter_um: float = 0.8, model: dict | None = None, noise: bool = True):
    """Draw the two del5q probe channels for real nuclei.

    Returns ``(probes, truth, spots)``: ``probes`` = {"EGR1": uint16, "D5S23": uint16}; ``truth`` one row
    per true label (``label, drawn_call, count_EGR1, count_D5S23, call, border``; the counts are the sites
    actually placed, ``call`` follows from them); ``spots`` one row per rendered (sub-)spot
    (``signal, label, site, y, x, photons, split, dim, background``; ``site`` numbers the counted signals
    of one colour in one nucleus, -1 for background spots). ``noise=False`` returns the expected ADU
    without photon / read noise (for tests).
    """
    from scipy import ndimage as ndi

    m = {**MODEL, **(model or {})}
    px = pixel_size_um
    diam_px = signal_diameter_um / px
    shape = labels.shape
    names = ("EGR1", "D5S23")
    n_lab = int(labels.max())
    objs = ndi.find_objects(labels)
    calls = list(m["pattern_fractions"])
    probs = np.array([m["pattern_fractions"][c] for c in calls], float)
    probs /= probs.sum()
    shift_angle = rng.uniform(0, 2 * math.pi)
    shifts = {"EGR1": np.zeros(2), "D5S23": m["chromatic_shift_px"] * np.array([math.sin(shift_angle),
                                                                                  math.cos(shift_angle)])}
    border_labels = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))) - {0}

    spot_rows: list[tuple] = []
    truth_rows = []

    def add_signal(sig, lab, site, cy, cx, photons, dim, background):
        if rng.random() < m["split_fraction"] and not background:
            sep = rng.uniform(*m["split_sep_diameters"]) * diam_px
            a = rng.uniform(0, math.pi)
            f = rng.uniform(0.4, 0.6)
            d = 0.5 * sep * np.array([math.sin(a), math.cos(a)])
            spot_rows.append((sig, lab, site, cy + d[0], cx + d[1], photons * f, True, dim, background))
            spot_rows.append((sig, lab, site, cy - d[0], cx - d[1], photons * (1 - f), True, dim, background))
        else:
            spot_rows.append((sig, lab, site, cy, cx, photons, False, dim, background))

    def brightness(eff):
        ph = m["photons_median"] * eff * math.exp(rng.normal(0, m["photons_sigma"]))
        dim = rng.random() < m["dim_fraction"]
        if dim:
            ph *= rng.uniform(*m["dim_factor"])
        return ph, dim

    for lab in range(1, n_lab + 1):
        sl = objs[lab - 1]
        if sl is None:
            continue
        pad = 2
        sl = tuple(slice(max(0, s.start - pad), s.stop + pad) for s in sl)
        mask = labels[sl] == lab
        dt = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        erode_px = min(m["erode_um"] / px, 0.5 * dt.max())
        inner = np.argwhere(dt > erode_px)
        if len(inner) == 0:
            inner = np.argwhere(dt >= dt.max())
        coords = inner.astype(float) + np.array([sl[0].start, sl[1].start], float)
        drawn = calls[int(rng.choice(len(calls), p=probs))]
        eff = math.exp(rng.normal(0, m["nucleus_eff_sigma"]))
        counts = {}
        for sig, n in zip(names, PATTERNS[drawn]):
            sites = _place_sites(rng, coords, n, m["min_sep_diameters"] * diam_px)
            counts[sig] = len(sites)
            for k, (cy, cx) in enumerate(sites):
                ph, dim = brightness(eff)
                add_signal(sig, lab, k, cy + shifts[sig][0], cx + shifts[sig][1], ph, dim, False)
        truth_rows.append((lab, drawn, counts["EGR1"], counts["D5S23"], lab in border_labels))

    # out-of-nucleus spots, far from every nucleus
    far = ndi.distance_transform_edt(labels == 0) * px >= m["background_min_dist_um"]
    far_coords = np.argwhere(far)
    n_bg_mean = m["background_spots_per_um2"] * far.sum() * px * px
    for sig in names:
        if len(far_coords) == 0:
            break
        for _ in range(rng.poisson(n_bg_mean)):
            cy, cx = far_coords[rng.integers(len(far_coords))] + rng.uniform(-0.5, 0.5, 2)
            ph, dim = brightness(1.0)
            add_signal(sig, 0, -1, cy, cx, ph, dim, True)

    spots = pd.DataFrame(spot_rows, columns=["signal", "label", "site", "y", "x", "photons", "split", "dim",
                                             "background"])
    # rendering: expected photons per pixel, then the camera
    d = ndi.gaussian_filter(dapi.astype(np.float32), 1.0 / px)   # blurred at 1 µm
    d = np.clip((d - np.percentile(d, 1)) / max(1e-6, np.percentile(d, 99) - np.percentile(d, 1)), 0, None)
    probes = {}
    for sig in names:
        lam = np.full(shape, m["haze_photons"], np.float64) + m["autofluor_photons"] * d
        for r in spots[spots.signal == sig].itertuples(index=False):
            fw = rng.uniform(*m["fwhm_factor"]) * diam_px
            ratio = rng.uniform(*m["axis_ratio"])
            s0 = fw / 2.355
            _render(lam, r.y, r.x, r.photons, s0 * math.sqrt(ratio), s0 / math.sqrt(ratio),
                    rng.uniform(0, math.pi), m["halo_fraction"], m["halo_width"])
        if noise:
            adu = m["offset_adu"] + m["gain_adu"] * rng.poisson(lam) + rng.normal(0, m["read_noise_adu"], shape)
        else:
            adu = m["offset_adu"] + m["gain_adu"] * lam
        probes[sig] = np.clip(np.rint(adu), 0, 65535).astype(np.uint16)

    truth = pd.DataFrame(truth_rows, columns=["label", "drawn_call", "count_EGR1", "count_D5S23", "border"])
    inv = {v: k for k, v in PATTERNS.items()}
    truth["call"] = [inv.get((a, b), "other") for a, b in zip(truth.count_EGR1, truth.count_D5S23)]
    return probes, truth, spots


# -------------------------------------------------------------------------------------------
# evaluation
# -------------------------------------------------------------------------------------------
def truth_segmentation(labels: np.ndarray, truth: pd.DataFrame, pixel_size_um: float):
    """A Segmentation from the true labels; nuclei touching the image border are not scorable."""
    from skimage.measure import regionprops_table

    from fishcount.segment import Segmentation

    t = regionprops_table(labels, properties=("label", "centroid", "area"))
    b = truth.set_index("label").loc[t["label"], "border"].to_numpy()
    qc = pd.DataFrame({"label": t["label"], "centroid_y": t["centroid-0"], "centroid_x": t["centroid-1"],
                       "area_um2": t["area"] * pixel_size_um**2, "scorable": ~b,
                       "exclusion_reason": np.where(b, "border", "")})
    return Segmentation(labels=labels, qc=qc, pixel_size_um=pixel_size_um, diameter_px=float("nan"),
                        diameter_source="truth")


def _iou_table(true: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    m = (true > 0) & (pred > 0)
    u, c = np.unique(np.stack([pred[m], true[m]], 1), axis=0, return_counts=True)
    pa, ta = np.bincount(pred.ravel()), np.bincount(true.ravel())
    return pd.DataFrame({"pred": u[:, 0], "true": u[:, 1], "inter": c, "pred_area": pa[u[:, 0]],
                         "true_area": ta[u[:, 1]], "iou": c / (pa[u[:, 0]] + ta[u[:, 1]] - c)})


def _detection_cause(res_spots: pd.DataFrame, true_spots: pd.DataFrame, lab_pred: int, lab_true: int,
                     sig: str, radius_px: float) -> str:
    """Why one colour's count of a nucleus is wrong: missed (dim / split / plain) or extra (split not
    merged / near background / noise)."""
    det = res_spots[(res_spots.label == lab_pred) & (res_spots.counts_as == sig)][["y", "x"]].to_numpy()
    ts = true_spots[(true_spots.label == lab_true) & (true_spots.signal == sig)]
    sites = ts.groupby("site").agg(y=("y", "mean"), x=("x", "mean"), dim=("dim", "first"),
                                   split=("split", "first"))
    if len(det) < len(sites):
        for s in sites.itertuples():
            if len(det) == 0 or np.hypot(det[:, 0] - s.y, det[:, 1] - s.x).min() > radius_px:
                return "missed_dim" if s.dim else ("missed_split" if s.split else "missed")
        return "missed_merged"          # every site has a detection near it: two sites merged into one
    for p in det:
        near = ts[np.hypot(ts.y - p[0], ts.x - p[1]) <= 2 * radius_px]
        if len(near) == 0:
            bg = true_spots[(true_spots.signal == sig) & true_spots.background]
            if len(bg) and np.hypot(bg.y - p[0], bg.x - p[1]).min() <= 2 * radius_px:
                return "extra_background_spot"
            other = true_spots[(true_spots.signal == sig) & (true_spots.label != lab_true) & ~true_spots.background]
            if len(other) and np.hypot(other.y - p[0], other.x - p[1]).min() <= 2 * radius_px:
                return "extra_neighbour_signal"
            return "extra_noise"
    return "extra_split_not_merged"


def evaluate(res, truth: pd.DataFrame, labels: np.ndarray, spots: pd.DataFrame, px: float, keys: list[str],
             tracked: set[str], diag: Counter, true_mask_result=None) -> dict:
    """Per-image numbers for one analyze_field result against the truth, and error causes in ``diag``."""
    tr = truth.set_index("label")
    interior = tr[~tr.border]
    nuc = res.nuclei
    tab = _iou_table(labels, np.asarray(res.labels))
    good = tab[tab.iou >= 0.5]
    p2t = dict(zip(good.pred, good.true))
    nuc = nuc.assign(true=nuc.label.map(p2t))
    sc = nuc[nuc.scorable.astype(bool) & nuc.true.notna()]
    sc = sc[sc.true.astype(int).isin(interior.index)]
    pred_counts = sc[keys].to_numpy()
    true_counts = interior.loc[sc.true.astype(int), keys].to_numpy()
    ok = (pred_counts == true_counts).all(1)
    radius = 0.8 / px
    tm = None
    if true_mask_result is not None:
        tm = true_mask_result.nuclei.set_index("label")
    # error causes
    for (_, r), good_row in zip(sc.iterrows(), ok):
        if good_row:
            continue
        t = int(r.true)
        if tm is not None:
            tm_ok = bool(tm.loc[t, "scorable"]) and (tm.loc[t, keys].to_numpy() == interior.loc[t, keys].to_numpy()).all()
            if tm_ok:
                # over: the predicted object took in a neighbour's signal; under: lost one of its own
                diff = int((r[keys].to_numpy() - interior.loc[t, keys].to_numpy()).sum())
                diag["wrong:segmentation_outline_" + ("over" if diff > 0 else "under")] += 1
                continue
        for sig, pc, tc in zip(["EGR1", "D5S23"], r[keys].to_numpy(), interior.loc[t, keys].to_numpy()):
            if pc != tc:
                diag["wrong:" + _detection_cause(res.spots, spots, int(r.label), t, sig, radius)] += 1
                break
    matched_true = set(int(v) for v in nuc.true.dropna())
    scor_true = set(int(v) for v in sc.true)
    t_best = tab.sort_values("inter", ascending=False).drop_duplicates("true").set_index("true")
    for t in interior.index:
        if t in scor_true:
            continue
        if t not in matched_true:
            # merged with a neighbour: the predicted object holding most of it holds >= 50 % of another
            if t in t_best.index:
                p = t_best.loc[t, "pred"]
                others = tab[(tab.pred == p) & (tab.true != t)]
                if len(others) and ((others.inter / others.true_area) >= 0.5).any():
                    diag["lost:segmentation_merged"] += 1
                    continue
                diag["lost:segmentation_split_or_outline"] += 1
            else:
                diag["lost:segmentation_missed"] += 1
            continue
        reason = nuc.loc[nuc.true == t, "exclusion_reason"].iloc[0]
        first = str(reason).split(";")[0] or "?"
        diag[f"excluded:{first}"] += 1
    n_scor = len(sc)
    # scorable predicted nuclei that match no true nucleus still enter the sample's counts and clone %:
    # merged = the object holds >= 50 % of two or more true nuclei
    unm = nuc[nuc.scorable.astype(bool) & nuc.true.isna()].label.to_numpy()
    held = tab[(tab.inter / tab.true_area) >= 0.5].groupby("pred").size()
    n_unm_merged = int(np.isin(unm, held.index[held >= 2]).sum())
    extra = {"scorable_unmatched": int(len(unm)), "scorable_unmatched_merged": n_unm_merged}
    if true_mask_result is None:
        # equal terms with Big-FISH: every interior nucleus, fishcount's exclusion rules ignored
        allc = nuc.set_index("label").loc[interior.index, keys].to_numpy()
        extra["correct_all_interior"] = int((allc == interior[keys].to_numpy()).all(1).sum())
        extra["scorable_labels"] = [int(v) for v in sc.true]
    return {**extra,
        "true_interior": int(len(interior)), "scorable_matched": int(n_scor), "correct": int(ok.sum()),
        "accuracy": float(ok.mean()) if n_scor else float("nan"),
        "clone_num": int(nuc[nuc.scorable.astype(bool)].call.isin(tracked).sum()),
        "clone_den": int(nuc.scorable.astype(bool).sum()),
        "true_clone_num": int(interior.call.isin(tracked).sum()),
    }


def bigfish_counts(spots_yx: np.ndarray, labels: np.ndarray, sig_name: str, px: float, panel) -> tuple:
    yi = np.clip(np.rint(spots_yx[:, 0]).astype(int), 0, labels.shape[0] - 1)
    xi = np.clip(np.rint(spots_yx[:, 1]).astype(int), 0, labels.shape[1] - 1)
    lab = labels[yi, xi]
    plain = np.bincount(lab, minlength=labels.max() + 1)
    from fishcount.spots import merge_split_signals

    df = pd.DataFrame({"label": lab, "signal": sig_name, "y": spots_yx[:, 0], "x": spots_yx[:, 1],
                       "snr": np.ones(len(lab))})
    mg = merge_split_signals(df, split_distance_um=panel.split_distance_um, pixel_size_um=px)
    split = np.bincount(mg.label.to_numpy()[(mg.counts_as == sig_name).to_numpy()], minlength=labels.max() + 1)
    return plain, split


# -------------------------------------------------------------------------------------------
# main
# -------------------------------------------------------------------------------------------
def run(n_images: int | None, seed: int, max_pixel_um: float, bigfish_python: str | None, verbose: bool,
        overlay_dir: Path | None = None, model: dict | None = None) -> dict:
    import tifffile

    import fishcount as fc
    from fishcount.io import field_from_arrays
    from fishcount.spots import spot_sigma_px

    panel = fc.load_panel("del5q")
    keys = [f"count_{s}" for s in panel.signal_names]
    tracked = set(panel.tracked_calls)
    images = list_images()[: n_images or None]
    modes = ("pipeline_px", "pipeline_nopx", "true_masks")
    per_image, diag = [], {m: Counter() for m in modes}
    tot = {m: Counter() for m in modes}
    bf_rows, bf_items, cpu = [], [], Counter()
    tmp = tempfile.TemporaryDirectory()
    stash = []
    for idx, (name, ip, mp) in enumerate(images):
        rng = np.random.default_rng([seed, idx])
        t0 = time.process_time()
        dapi, labels, px, k = prepare_image(tifffile.imread(ip), tifffile.imread(mp), max_pixel_um)
        probes, truth, spots = generate_probes(dapi, labels, px, rng, signal_diameter_um=panel.signal_diameter_um,
                                               model=model)
        cpu["generate"] += time.process_time() - t0
        line = {"image": name, "shape": list(labels.shape), "upsample": k, "pixel_size_um": round(px, 4)}
        fld = field_from_arrays(dapi, probes, px, panel=panel, name=name)
        t0 = time.process_time()
        r_tm = fc.analyze_field(fld, panel, segmentation=truth_segmentation(labels, truth, px))
        cpu["true_masks"] += time.process_time() - t0
        t0 = time.process_time()
        r_px = fc.analyze_field(fld, panel)
        cpu["pipeline_px"] += time.process_time() - t0
        t0 = time.process_time()
        r_np = fc.analyze_field(field_from_arrays(dapi, probes, None, panel=panel, name=name), panel)
        cpu["pipeline_nopx"] += time.process_time() - t0
        for mode, r in (("pipeline_px", r_px), ("pipeline_nopx", r_np), ("true_masks", r_tm)):
            e = evaluate(r, truth, labels, spots, px, keys, tracked, diag[mode],
                         true_mask_result=None if mode == "true_masks" else r_tm)
            line[mode] = e
            tot[mode].update({k2: v for k2, v in e.items() if k2 not in ("accuracy", "scorable_labels")})
        line["pipeline_nopx"]["inferred_pixel_size_um"] = round(float(r_np.params.get("pixel_size_um", float("nan"))), 4) \
            if isinstance(r_np.params.get("pixel_size_um"), (int, float)) else None
        per_image.append(line)
        if overlay_dir is not None and idx < 3:
            overlay_dir.mkdir(parents=True, exist_ok=True)
            from fishcount.overlay import render_overlay, save_png

            save_png(render_overlay(r_px), overlay_dir / f"{name}_pipeline.png")
        if bigfish_python is not None:
            sigma_nm = spot_sigma_px(panel.signal_diameter_um, px) * px * 1000
            for sig in panel.signal_names:
                p = str(Path(tmp.name) / f"{idx}_{sig}.npy")
                np.save(p, probes[sig].astype(np.float32))
                bf_items.append({"path": p, "px_nm": px * 1000, "sigma_nm": sigma_nm, "idx": idx, "signal": sig})
            stash.append((labels, truth, px))
        if verbose:
            def fmt(e):
                return (f"acc {e['accuracy']:.3f} ({e['scorable_matched']:>3}/{e['true_interior']:>3})"
                        if e["scorable_matched"] else f"acc   -   (  0/{e['true_interior']:>3})")
            print(f"{name:9s} {str(tuple(labels.shape)):13s} x{k} {px:.3f}µm | px {fmt(line['pipeline_px'])} | "
                  f"no px {fmt(line['pipeline_nopx'])} | true masks {fmt(line['true_masks'])}", flush=True)

    out = {"images": len(images), "seed": seed, "max_pixel_um": max_pixel_um, "model": {**MODEL, **(model or {})},
           "nucleus_diameter_um": NUCLEUS_DIAMETER_UM, "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()}}
    for mode in modes:
        t = tot[mode]
        out[mode] = {
            "accuracy": t["correct"] / max(1, t["scorable_matched"]), "scorable_matched": t["scorable_matched"],
            "wrong": t["scorable_matched"] - t["correct"], "true_interior": t["true_interior"],
            "scorable_unmatched": t["scorable_unmatched"], "scorable_unmatched_merged": t["scorable_unmatched_merged"],
            "fraction_true_interior_scorable_matched": t["scorable_matched"] / max(1, t["true_interior"]),
            "clone_pct": 100 * t["clone_num"] / max(1, t["clone_den"]),
            "true_clone_pct": 100 * t["true_clone_num"] / max(1, t["true_interior"]),
            "errors": dict(diag[mode].most_common()),
        }
    out["true_masks"]["accuracy_all_interior_no_exclusions"] = tot["true_masks"]["correct_all_interior"] / max(
        1, tot["true_masks"]["true_interior"])
    ratio = [ln["pipeline_nopx"]["inferred_pixel_size_um"] / ln["pixel_size_um"] for ln in per_image]
    out["pipeline_nopx"]["inferred_over_true_pixel_size"] = {
        "median": float(np.median(ratio)), "within_25pct": float(np.mean(np.abs(np.array(ratio) - 1) <= 0.25))}
    if bigfish_python is not None and bf_items:
        from bench_detection import run_bigfish

        t0 = time.perf_counter()
        bf = run_bigfish(bf_items, bf_items[0]["px_nm"], bigfish_python)
        ok_plain, ok_split, ok_on_fc, ths = [], [], [], []
        for idx, (labels, truth, px) in enumerate(stash):
            its = [(it, b) for it, b in zip(bf_items, bf) if it["idx"] == idx]
            tr = truth.set_index("label")
            elig = tr.index[~tr.border].to_numpy()
            cp, cs = [], []
            for it, b in its:
                ths.append(round(b["threshold"], 1))
                p, s = bigfish_counts(b["spots"], labels, it["signal"], px, panel)
                cp.append(p[elig])
                cs.append(s[elig])
            tv = tr.loc[elig, keys].to_numpy()
            ok_plain.append((np.stack(cp, 1) == tv).all(1))
            fc_sc = np.isin(elig, per_image[idx]["true_masks"]["scorable_labels"])
            ok_on_fc.append(ok_plain[-1][fc_sc])
            ok_split.append((np.stack(cs, 1) == tv).all(1))
            per_image[idx]["bigfish_true_masks_accuracy"] = float(ok_plain[-1].mean()) if len(elig) else None
        cat = np.concatenate(ok_plain)
        out["bigfish_true_masks"] = {"accuracy": float(cat.mean()), "n_nuclei": int(len(cat)),
                                     "accuracy_with_split_rule": float(np.concatenate(ok_split).mean()),
                                     "accuracy_on_fishcount_scorable": float(np.concatenate(ok_on_fc).mean()),
                                     "wall_seconds": round(time.perf_counter() - t0, 1),
                                     "thresholds": ths}
    tmp.cleanup()
    for ln in per_image:
        ln["true_masks"].pop("scorable_labels", None)
    out["per_image"] = per_image
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=None, help="only the first N images (default: all 41)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-pixel-um", type=float, default=0.25,
                    help="enlarge coarser images by an integer factor to reach this pixel size (0 = never)")
    ap.add_argument("--bigfish-python", default=os.environ.get("BIGFISH_PYTHON"))
    ap.add_argument("--overlays", type=Path, default=None, help="write the first 3 pipeline overlays here")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "semisynthetic.json")
    ap.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                    help="override a generative-model parameter (MODEL), e.g. dim_fraction=0")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    model = {}
    for kv in a.model:
        key, _, val = kv.partition("=")
        if key not in MODEL:
            ap.error(f"--model: unknown parameter {key!r} (one of {', '.join(MODEL)})")
        model[key] = tuple(float(v) for v in val.split(",")) if "," in val else float(val)
    res = run(a.images, a.seed, a.max_pixel_um, a.bigfish_python, a.verbose, a.overlays, model)
    summary = {k: v for k, v in res.items() if k != "per_image"}
    print(json.dumps(summary, indent=1, default=str))
    from fishcount._atomic import write_text_atomic

    write_text_atomic(a.out, json.dumps(res, indent=1, default=str) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
