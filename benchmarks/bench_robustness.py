"""Whole-pipeline robustness: ``analyze_field`` (own segmentation, own thresholds) under changed conditions.

Usage (repository root; ~2 min for all conditions on one core)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_robustness.py [--fields 2] [--size 1024]
        [--only NAME[,NAME...]] [--seed0 300] [--json benchmarks/results/robustness.json]

``bench_detection.py`` measures the pipeline on the simulator's DEFAULT fields, and its robustness table
uses the TRUE masks (detection only). Here every condition runs the whole pipeline as a user would: the
simulated field goes through ``analyze_field`` with the defaults, and each row reports, over ``--fields``
fields (seeds ``seed0, seed0 + 1, ...``; never the benchmark seeds 0-9 nor the dev seeds 100-147):

* ``accuracy``: exact per-nucleus count accuracy (every panel signal right) on the scorable nuclei that
  match a true nucleus at IoU >= 0.5;
* ``scorable``: share of the true interior nuclei (not cut by the border) that are scorable and matched;
* ``clone``: clone % (the panel's tracked calls among scorable nuclei) minus the true clone % of the interior
  nuclei, in percentage points;
* the number of scorable objects that match no true nucleus (merged pairs, fragments, debris).

Nothing here is tuned on: the conditions are the simulator's knobs moved one at a time, away from the
defaults the segmentation and detection were developed on, plus other panels, a field without a pixel
size (the scale then comes from the nuclei), and the default fields stored as 8-bit or float images.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fishcount as fc  # noqa: E402
from bench_scorable import field_rows  # noqa: E402

#: name -> (panel, simulate_field keyword arguments, pixel size given to the pipeline: True = the field's)
CONDITIONS: dict[str, tuple[str, dict, bool]] = {
    "defaults": ("del5q", {}, True),
    "no pixel size (scale from the nuclei)": ("del5q", {}, False),
    "pixel 0.065 µm (100x, sCMOS)": ("del5q", {"pixel_size_um": 0.065}, True),
    "pixel 0.10 µm": ("del5q", {"pixel_size_um": 0.10}, True),
    "pixel 0.24 µm": ("del5q", {"pixel_size_um": 0.24}, True),
    "wrong pixel size given: 2.5x too large (0.4 µm for 0.16)": (
        "del5q", {"analyze_params": {"pixel_size_um": 0.4}}, True),
    "wrong pixel size given: 2.5x too small (0.064 µm for 0.16)": (
        "del5q", {"analyze_params": {"pixel_size_um": 0.064}}, True),
    "small nuclei 5-8 µm": ("del5q", {"nucleus_diameter_um": (5.0, 8.0)}, True),
    "large nuclei 9-15 µm": ("del5q", {"nucleus_diameter_um": (9.0, 15.0)}, True),
    "dense field (density 0.5)": ("del5q", {"density": 0.5}, True),
    "sparse field (25 nuclei)": ("del5q", {"n_nuclei": 25}, True),
    "dim probes (peak 250 ADU)": ("del5q", {"signal_peak_adu": 250.0}, True),
    "noisy camera (read noise 20 ADU)": ("del5q", {"read_noise_adu": 20.0}, True),
    "strong texture + autofluorescence": ("del5q", {"chromatin_texture": 0.6, "autofluorescence_adu": 200.0}, True),
    "no chromatin texture": ("del5q", {"chromatin_texture": 0.0}, True),
    "dim DAPI (level 600 ADU)": ("del5q", {"dapi_level_adu": 600.0}, True),
    "many touching (0.4) and lobulated (0.3)": ("del5q", {"touching_fraction": 0.4, "lobulated_fraction": 0.3}, True),
    "20 % diffuse signals": ("del5q", {"diffuse_fraction": 0.2}, True),
    "strong vignetting (0.6)": ("del5q", {"illumination_falloff": 0.6}, True),
    "70 % abnormal": ("del5q", {"abnormal_fraction": 0.7}, True),
    "all normal (0 % abnormal: the clone % is the false-call rate)": ("del5q", {"abnormal_fraction": 0.0}, True),
    "8-bit export (min-max)": ("del5q", {"export": "uint8"}, True),
    "8-bit export (contrast-stretched, saturating)": ("del5q", {"export": "uint8_stretch"}, True),
    "float 0-1 export": ("del5q", {"export": "float01"}, True),
    "8-bit JPEG export per channel (quality 90)": ("del5q", {"export": "jpeg90"}, True),
    "RGB composite JPEG (quality 90, 4:2:0)": ("del5q", {"export": "rgb_jpeg90"}, True),
    "RGB composite JPEG (quality 75, 4:2:0)": ("del5q", {"export": "rgb_jpeg75"}, True),
    "camera hot pixels (1 in 2000)": ("del5q", {"hot_pixel_fraction": 0.0005}, True),
    "probe channel crosstalk 3 %": ("del5q", {"channel_crosstalk": 0.03}, True),
    "probe channel crosstalk 5 %": ("del5q", {"channel_crosstalk": 0.05}, True),
    "probe channel crosstalk 10 %": ("del5q", {"channel_crosstalk": 0.10}, True),
    "dual fusion, probe channel crosstalk 5 %": ("bcr_abl1", {"channel_crosstalk": 0.05}, True),
    "dual fusion, probe channel crosstalk 10 %": ("bcr_abl1", {"channel_crosstalk": 0.10}, True),
    "dual fusion, 90 % abnormal": ("bcr_abl1", {"abnormal_fraction": 0.9}, True),
    "dual fusion, 90 % abnormal, crosstalk 10 %": ("bcr_abl1", {"abnormal_fraction": 0.9,
                                                              "channel_crosstalk": 0.10}, True),
    "dual fusion, crosstalk 10 %, calibrated (channel_crosstalk)": (
        "bcr_abl1", {"channel_crosstalk": 0.10,
                     "analyze_params": {"channel_crosstalk": {"ABL1->BCR": 0.10, "BCR->ABL1": 0.10}}}, True),
    "break-apart, probe channel crosstalk 5 %": ("kmt2a", {"channel_crosstalk": 0.05}, True),
    "break-apart, probe channel crosstalk 10 %": ("kmt2a", {"channel_crosstalk": 0.10}, True),
    "break-apart, crosstalk 10 %, calibrated (channel_crosstalk)": (
        "kmt2a", {"channel_crosstalk": 0.10,
                  "analyze_params": {"channel_crosstalk": {"SpectrumOrange->SpectrumGreen": 0.10,
                                                           "SpectrumGreen->SpectrumOrange": 0.10}}}, True),
    "dual fusion, probe channels 0.3 µm apart": ("bcr_abl1", {"channel_shift_um": 0.3}, True),
    "dual fusion, probe channels 0.6 µm apart": ("bcr_abl1", {"channel_shift_um": 0.6}, True),
    "dual fusion, 0.6 µm apart, corrected (channel_shifts_um)": (
        "bcr_abl1", {"channel_shift_um": 0.6, "analyze_params": {"channel_shifts_um": {"BCR": (0.0, 0.6)}}}, True),
    "camera hot pixels, probe removal off": ("del5q", {"hot_pixel_fraction": 0.0005,
                                                       "analyze_params": {"hot_pixel_ratio": 0.0}}, True),
    "panel del7q": ("del7q", {}, True),
    "panel tp53": ("tp53", {}, True),
    "panel cep8 (enumeration)": ("cep8", {}, True),
    "panel kmt2a (break-apart)": ("kmt2a", {}, True),
    "panel bcr_abl1 (dual fusion)": ("bcr_abl1", {}, True),
}


def run_field(panel_id: str, sim_kwargs: dict, give_pixel: bool, seed: int, size: int) -> dict:
    """One field of a condition, scored as ``bench_scorable.field_rows`` (same matching and counts)."""
    r = field_rows(seed, fc.load_panel(panel_id), (size, size), give_pixel, **sim_kwargs)
    sc, right, inner = r["scorable"], r["right"], r["inner"]
    return {"n_sc": int(sc.sum()), "n_right": int((right & sc).sum()), "n_sc_inner": int((sc & inner).sum()),
            "n_interior": r["n_interior"], "unmatched_scorable": r["unmatched_scorable"],
            "clone": r["clone"], "clone_true": r["clone_true"], "cpu": r["cpu"], "warned": r["warned"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fields", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seed0", type=int, default=300)
    ap.add_argument("--only", default="")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    only = [o.strip() for o in a.only.split(",") if o.strip()]
    results = {}
    print(f"{'condition':48s} {'accuracy':>9s} {'scorable':>9s} {'clone pts':>9s} {'unmatched':>9s} {'CPU s/field':>11s} "
          f"{'warned':>6s}")
    for name, (panel_id, kw, give_pixel) in CONDITIONS.items():
        if only and not any(o in name for o in only):
            continue
        rows = [run_field(panel_id, kw, give_pixel, a.seed0 + i, a.size) for i in range(a.fields)]
        n_sc = sum(r["n_sc"] for r in rows)
        acc = sum(r["n_right"] for r in rows) / max(1, n_sc)
        scor = sum(r["n_sc_inner"] for r in rows) / max(1, sum(r["n_interior"] for r in rows))
        clone = 100 * sum(r["clone"][0] for r in rows) / max(1, sum(r["clone"][1] for r in rows))
        clone_t = 100 * sum(r["clone_true"][0] for r in rows) / max(1, sum(r["clone_true"][1] for r in rows))
        un = sum(r["unmatched_scorable"] for r in rows)
        cpu = sum(r["cpu"] for r in rows) / len(rows)
        warned = sum(r["warned"] for r in rows)  # fields with a warning (analyze_field params["warnings"])
        results[name] = {"accuracy": acc, "scorable_matched": scor, "n_scorable_matched": n_sc,
                         "clone_pct": clone, "true_clone_pct": clone_t, "unmatched_scorable": un, "cpu_s_per_field": cpu,
                         "fields_warned": warned}
        print(f"{name:48s} {acc:9.4f} {scor:9.1%} {clone - clone_t:+9.1f} {un:9d} {cpu:11.2f} {warned:3d}/{len(rows)}",
              flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"fields": a.fields, "size": a.size, "seed0": a.seed0,
                                            "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
