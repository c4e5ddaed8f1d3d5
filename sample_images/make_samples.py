"""Regenerate the bundled sample study (sample_images/) with the fishcount simulator.

Usage (from the repository root)::

    .venv/bin/python sample_images/make_samples.py --overwrite
    .venv/bin/python sample_images/make_samples.py --controls 10 --out controls   # normal controls, not bundled

Three del(5q) patients (EGR1 / D5S23,D5S721 panel) at baseline, week 8 and week 16, two simulated
fields per sample. Writes ``<patient>/<timepoint>/fieldNN.ome.tif`` with the truth files beside each
field (``fieldNN_truth_nuclei.csv``, ``fieldNN_truth_spots.csv``, ``fieldNN_truth_labels.tif``),
``manifest.csv`` (paths relative to this folder) and ``truth_samples.csv``. Everything is
deterministic: the seed of a field is ``1000 * patient + 100 * timepoint + field``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import beta

from fishcount._atomic import write_csv_atomic
from fishcount.simulate import simulate_field, write_simulated_field

PANEL = "del5q"
TIMEPOINTS = (("baseline", 0), ("week08", 8), ("week16", 16))
# true clone fraction (tracked calls del5q 1O2G + monosomy5 1O1G, of all nuclei) per timepoint
STUDY = {
    "P01": (0.60, 0.15, 0.01),  # falls: minor at week 8, major at week 16
    "P02": (0.55, 0.50, 0.52),  # persists: no response
    "P03": (0.70, 0.45, 0.30),  # partial: minor response at week 16 (30 <= 0.5 x 70)
}
FIELDS_PER_SAMPLE = 2
# 704 x 704 px at 0.2 µm (141 µm square) with dense marrow-like nuclei: ~165 nuclei, ~110 scorable
# per field, so ~220 scorable nuclei per sample (clinical.md §3.1: 200 nuclei per sample) within
# the 25 MB budget of the bundled study.
FIELD = dict(shape=(704, 704), pixel_size_um=0.2, density=0.55)
# a dim 12-bit-camera exposure (CCD at 0.25 ADU/e-, low offset), unlike the simulator's default
# 16-bit-like levels, so that the pipeline meets two intensity regimes
EXPOSURE = dict(gain_adu_per_photon=0.25, offset_adu=10.0, read_noise_adu=1.5, dapi_level_adu=700.0, dapi_background_adu=10.0,
                probe_background_adu=12.0, autofluorescence_adu=25.0, signal_peak_adu=300.0)
# expected response with the default criteria (fishcount/criteria/trial_fish.toml, clinical.md §6.2 R10):
# major if F <= cutoff(N), minor if F > cutoff and F <= 0.5 x B; cutoff(N) = BETAINV(0.95, kmax + 1, N)
# with kmax = 3 (provisional cut-off, clinical.md §3.3 and §6.3).
KMAX = 3
CONFIDENCE = 0.95
MINOR_FRACTION_OF_BASELINE = 0.5


def cutoff(n: int) -> float:
    """BETAINV(0.95, kmax + 1, N) as a fraction (clinical.md §3.3 [U formula; C values])."""
    return float(beta.ppf(CONFIDENCE, KMAX + 1, n))


def scorable(truth: pd.DataFrame) -> pd.Series:
    """Nuclei a careful scorer keeps: whole in the field, not touching another nucleus, in focus,
    both probes hybridised (clinical.md §3.2, §6.1 R1). Lobulated nuclei are kept (one nucleus)."""
    return ~truth["border"] & ~truth["touching"] & ~truth["out_of_focus"] & (truth["failed_signal"] == "")


def make_controls(out: Path, n_controls: int, overwrite: bool) -> None:
    """Normal control samples (no clone) imaged like the study, for `fishcount cutoff`
    (a laboratory cut-off from ~20 normal specimens, clinical.md §3.3). Not bundled (size)."""
    manifest = []
    for c in range(1, n_controls + 1):
        for f in range(1, FIELDS_PER_SAMPLE + 1):
            sim = simulate_field(PANEL, abnormal_fraction=0.0, seed=50_000 + 10 * c + f, **FIELD, **EXPOSURE)
            rel = Path(f"C{c:02d}") / "control" / f"field{f:02d}.ome.tif"
            write_simulated_field(sim, out / rel, overwrite=overwrite)
            manifest.append(dict(path=rel.as_posix(), patient=f"C{c:02d}", timepoint="control", week=0, panel=PANEL))
        print(f"C{c:02d}: normal control, {FIELDS_PER_SAMPLE} fields")
    write_csv_atomic(pd.DataFrame(manifest), out / "manifest.csv")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent), help="output folder (default: this folder)")
    ap.add_argument("--overwrite", action="store_true", help="replace existing fields")
    ap.add_argument("--controls", type=int, default=0, metavar="N",
                    help="instead of the study, write N normal control samples to --out (for `fishcount cutoff`)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.controls:
        if out.resolve() == Path(__file__).resolve().parent:
            ap.error("--controls needs an --out folder other than sample_images/ (controls are not bundled)")
        make_controls(out, args.controls, args.overwrite)
        return 0
    manifest = []
    samples = []
    for p_i, (patient, fractions) in enumerate(STUDY.items(), start=1):
        baseline = None
        for t_i, ((timepoint, week), frac) in enumerate(zip(TIMEPOINTS, fractions)):
            truths = []
            for f in range(1, FIELDS_PER_SAMPLE + 1):
                seed = 1000 * p_i + 100 * t_i + f
                sim = simulate_field(PANEL, abnormal_fraction=frac, seed=seed, **FIELD, **EXPOSURE)
                rel = Path(patient) / timepoint / f"field{f:02d}.ome.tif"
                write_simulated_field(sim, out / rel, overwrite=args.overwrite)
                manifest.append(dict(path=rel.as_posix(), patient=patient, timepoint=timepoint, week=week, panel=PANEL))
                truths.append(sim.truth)
            t = pd.concat(truths, ignore_index=True)
            ok = scorable(t)
            n, x = int(ok.sum()), int((t["tracked"] & ok).sum())
            f_true = x / n
            cut = cutoff(n)
            if week == 0:
                baseline = f_true
                category = "baseline (positive)" if f_true > cut else "baseline (not positive)"
            elif f_true <= cut:
                category = "major"
            elif f_true <= MINOR_FRACTION_OF_BASELINE * baseline:
                category = "minor"
            else:
                category = "none"
            samples.append(dict(
                patient=patient, timepoint=timepoint, week=week, fields=FIELDS_PER_SAMPLE,
                true_nuclei=len(t), true_scorable_nuclei=n, true_abnormal_scorable=x,
                true_abnormal_fraction=round(f_true, 4),
                true_abnormal_fraction_all=round(float(t["tracked"].mean()), 4),
                simulated_fraction=frac, cutoff_fraction=round(cut, 4), expected_response=category,
            ))
            print(f"{patient} {timepoint}: {n} scorable, {x} abnormal ({100 * f_true:.1f}%), {category}")
    write_csv_atomic(pd.DataFrame(manifest), out / "manifest.csv")
    write_csv_atomic(pd.DataFrame(samples), out / "truth_samples.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
