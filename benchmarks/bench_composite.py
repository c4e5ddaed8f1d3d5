"""Colour composites read from the file by display colour: the whole pipeline on simulated fields saved as
8-bit RGB pictures, against the same fields' 16-bit channels.

Each simulated field (1024², seeds 300..; ``--panel``, default del5q) is contrast-stretched to 8 bits per channel (1st-99.5th
percentile, as display exports) and drawn as DAPI blue, D5S23 green and EGR1 either pure red or orange
(#ff8c00: red plus 55 % of it in green, as a composite shows SpectrumOrange), then saved as PNG or as JPEG
(quality 90, Pillow's 4:2:0) and analysed from the file with no ``--channels``: fishcount reads the planes
by the panel's display colours (docs/reading.md, "Colour composites") and unmixes the orange probe's share
of the green plane (:func:`fishcount.spots.display_mixing`, for break-apart and dual-fusion panels too).

Usage (repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_composite.py [--fields 6] [--pixel-size] [--panel kmt2a]

Prints, per way of storing: exact per-nucleus count accuracy on scorable nuclei matched to a true nucleus
(IoU >= 0.5), how many true interior nuclei are scorable and matched, the clone % against the truth, the
channel mapping read and the crosstalk measured. ``--pixel-size`` gives the pipeline the simulated pixel
size (pictures carry none; without it the scale comes from the nuclei).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fishcount as fc  # noqa: E402
from bench_detection import match_labels  # noqa: E402
from bench_scorable import export_channel  # noqa: E402


def composite(sim, orange: bool) -> np.ndarray:
    """(Y, X, 3) uint8: the orange probe (EGR1) red or orange, the green one (D5S23) green, DAPI blue, each
    stretched to 8 bits."""
    dapi, egr1, d5s23 = (export_channel(c, "uint8_stretch").astype(np.float64) for c in sim.image)
    green = np.clip(d5s23 + (140.0 / 255.0) * egr1, 0, 255) if orange else d5s23
    return np.round(np.stack([egr1, green, dapi], -1)).astype(np.uint8)


def score(sim, res, panel) -> dict:
    keys = [f"count_{k}" for k in panel.pattern_keys]
    truth = sim.truth.set_index("label")
    interior = truth[~truth.border]
    nuc = res.nuclei.copy()
    nuc["true"] = nuc.label.map(match_labels(sim.labels, res.labels))
    m = nuc[nuc.true.notna() & nuc.scorable]
    right = (m[keys].to_numpy() == truth.loc[m.true.astype(int), keys].to_numpy()).all(1)
    inner = m.true.astype(int).isin(interior.index).to_numpy()
    tracked = set(panel.tracked_calls)
    return {"right": int(right.sum()), "n": len(m), "inner": int(inner.sum()), "n_interior": len(interior),
            "clone": (int(nuc[nuc.scorable].call.isin(tracked).sum()), int(nuc.scorable.sum())),
            "clone_true": (int(interior.call.isin(tracked).sum()), len(interior))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fields", type=int, default=6)
    ap.add_argument("--pixel-size", action="store_true", help="give the simulated pixel size")
    ap.add_argument("--panel", default="del5q", help="a two-colour panel (orange probe first)")
    a = ap.parse_args(argv)
    from PIL import Image

    panel = fc.load_panel(a.panel)
    first = panel.signal_names[0]
    ways = ["16-bit channels", f"PNG, {first} red", f"PNG, {first} orange", f"JPEG q90, {first} orange"]
    rows = {w: [] for w in ways}
    notes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(300, 300 + a.fields):
            sim = fc.simulate_field(panel, shape=(1024, 1024), seed=seed)
            px = sim.pixel_size_um if a.pixel_size else None
            fld = fc.io.field_from_arrays(sim.image[0], dict(zip(panel.signal_names, sim.image[1:])), px,
                                          panel=panel, name=f"f{seed}")
            rows[ways[0]].append(score(sim, fc.analyze_field(fld, panel), panel))
            for way in ways[1:]:
                path = Path(tmp) / f"f{seed}.{'jpg' if 'JPEG' in way else 'png'}"
                rgb = composite(sim, orange="orange" in way)
                Image.fromarray(rgb).save(path, **({"quality": 90} if "JPEG" in way else {}))
                res = fc.analyze_field(path, panel, pixel_size_um=px)
                rows[way].append(score(sim, res, panel))
                notes[way] = (dict(res.field.channel_map), res.params.get("crosstalk"))
    print(f"{a.fields} simulated {panel.id} fields 1024² (seeds 300-{299 + a.fields}), pixel size "
          f"{'given' if a.pixel_size else 'not given (pictures carry none)'}")
    print(f"{'stored as':24s} {'accuracy':>16s} {'scorable+matched':>17s} {'clone % (true)':>15s}")
    for w in ways:
        r = rows[w]
        right, n = sum(x["right"] for x in r), sum(x["n"] for x in r)
        inner, n_int = sum(x["inner"] for x in r), sum(x["n_interior"] for x in r)
        c = 100 * sum(x["clone"][0] for x in r) / max(1, sum(x["clone"][1] for x in r))
        ct = 100 * sum(x["clone_true"][0] for x in r) / sum(x["clone_true"][1] for x in r)
        print(f"{w:24s} {right / n:8.4f} ({n:5d}) {100 * inner / n_int:15.1f} % {c:7.1f} ({ct:.1f})")
        if w in notes:
            cmap, xt = notes[w]
            print(f"{'':24s} channels {cmap}, crosstalk {xt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
