"""Signals of another size than the panel says: the signal size check on and off.

Usage (repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_signal_size.py            # factors 0.5 ... 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_signal_size.py 0.6 1.5 --seeds 0-9

Simulated del(5q) fields (``fishcount.simulate_field`` defaults, 1024², seeds 0-4) whose probe signals are
drawn at ``factor`` x the panel's 0.8 µm signal diameter (the simulator scales the split-signal
distances and the minimum separation with it), analysed with the STANDARD panel by ``analyze_field``
(own segmentation), once with the default ``signal_size_tolerance`` and once with the check off (-1).
Prints per factor: the measured size ratio (median over fields), how many fields used the measured
size, exact count accuracy on scorable nuclei matched to a true nucleus (IoU >= 0.5), over- / under-
counted nuclei, the share of true interior nuclei scorable and matched, and clone % vs the truth.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fishcount as fc  # noqa: E402
from bench_detection import match_labels  # noqa: E402
from fishcount.io import field_from_arrays  # noqa: E402


def run(factor: float, seeds: range, tolerance: float | None) -> dict:
    panel = fc.load_panel("del5q")
    drawn = dataclasses.replace(panel, signal_diameter_um=panel.signal_diameter_um * factor)
    keys = [f"count_{k}" for k in panel.pattern_keys]
    tracked = set(panel.tracked_calls)
    right, over, under, n_in, n_int, ratios, used = [], 0, 0, 0, 0, [], 0
    clone, clone_t = [0, 0], [0, 0]
    for seed in seeds:
        sim = fc.simulate_field(drawn, shape=(1024, 1024), seed=seed)
        d = {k: sim.image[i] for i, k in enumerate(sim.channel_names)}
        fld = field_from_arrays(d.pop("DAPI"), d, sim.pixel_size_um, panel=panel, name=f"f{seed}")
        kw = {} if tolerance is None else {"signal_size_tolerance": tolerance}
        res = fc.analyze_field(fld, panel, **kw)
        rec = res.params["signal_size"]
        if rec["measured_ratio"] is not None:
            ratios.append(rec["measured_ratio"])
        used += rec["source"] == "measured"
        truth = sim.truth.set_index("label")
        interior = truth[~truth.border]
        nuc = res.nuclei.copy()
        nuc["true"] = nuc.label.map(match_labels(sim.labels, res.labels))
        sc = nuc[nuc.scorable & nuc.true.notna()]
        diff = sc[keys].to_numpy() - truth.loc[sc.true.astype(int), keys].to_numpy()
        right.append((diff == 0).all(1))
        over += int((diff > 0).any(1).sum())
        under += int((diff < 0).any(1).sum())
        n_in += int(sc.true.isin(interior.index).sum())
        n_int += len(interior)
        clone[0] += int(nuc[nuc.scorable].call.isin(tracked).sum())
        clone[1] += int(nuc.scorable.sum())
        clone_t[0] += int(interior.call.isin(tracked).sum())
        clone_t[1] += len(interior)
    ok = np.concatenate(right)
    return {"factor": factor, "measured_ratio": float(np.median(ratios)) if ratios else None,
            "fields_measured_size": used, "accuracy": float(ok.mean()), "n": int(ok.size), "over": over,
            "under": under, "scorable_matched": n_in / n_int, "clone_pct": 100 * clone[0] / clone[1],
            "true_clone_pct": 100 * clone_t[0] / clone_t[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("factors", nargs="*", type=float, default=[0.5, 0.6, 0.75, 1.0, 1.5, 2.0])
    ap.add_argument("--seeds", default="0-4", help="first-last seed (inclusive)")
    a = ap.parse_args()
    lo, hi = (int(v) for v in a.seeds.split("-"))
    seeds = range(lo, hi + 1)
    print("factor | measured ratio | fields at measured size | accuracy check on (n, over/under) | "
          "check off | scorable on / off | clone on / off (true)")
    for f in a.factors:
        on, off = run(f, seeds, None), run(f, seeds, -1.0)
        mr = f"{on['measured_ratio']:.2f}" if on["measured_ratio"] is not None else "-"
        print(f"x{f:<5} | {mr} | {on['fields_measured_size']}/{len(seeds)} | {on['accuracy']:.4f} ({on['n']}, "
              f"{on['over']}/{on['under']}) | {off['accuracy']:.4f} ({off['n']}, {off['over']}/{off['under']}) | "
              f"{on['scorable_matched']:.1%} / {off['scorable_matched']:.1%} | {on['clone_pct']:.1f} / "
              f"{off['clone_pct']:.1f} ({on['true_clone_pct']:.1f})", flush=True)


if __name__ == "__main__":
    main()
