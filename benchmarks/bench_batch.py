"""Benchmark of the batch runner: worker scaling, Dask overhead, memory per worker, pooling memory.

Usage::

    python benchmarks/bench_batch.py [--fields 40] [--size 1024] [--work /tmp/fishcount-bench-batch]
                                     [--pool-fields 500] [--json out.json]

Measures, on simulated del(5q) fields (fishcount.simulate, default 40 fields of 1024 x 1024):

0. the CPU an idle 2-worker local cluster burns per second (housekeeping timers), which the field
   tasks lose on a 2-core machine;
1. fields/s with the plain serial loop (``workers=1``) and with a 2-worker local Dask cluster
   (``workers=2``): the speed-up;
2. per-field overhead of the Dask path: a 1-worker ``distributed.LocalCluster`` (via ``scheduler=``)
   against the plain loop, same fields;
3. memory: peak RSS growth of one worker process (a fresh subprocess) analysing field after field,
   above its resident set after imports, and the peak of Python-traced allocations, as multiples of
   the field's bytes: stored (uint16, all channels) and as float32 (the working copy ``read_field``
   returns);
4. pooling: peak memory of ``pool_nuclei`` over ``--pool-fields`` per-field nuclei tables against
   the size of the pooled table (it must not hold all nuclei twice).

Results are printed as Markdown rows for docs/benchmarks.md (## Batch) and optionally saved as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_study(root: Path, n_fields: int, size: int) -> Path:
    """n_fields simulated fields laid out as P<k>/week00|week16/fieldNN.ome.tif (cached)."""
    from fishcount.simulate import simulate_field, write_simulated_field

    done = root / f".complete-{n_fields}-{size}"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    per_sample = 5
    k = 0
    while k < n_fields:
        s = k // per_sample
        patient, tp = f"P{s // 2 + 1:02d}", ("week00", "week16")[s % 2]
        frac = 0.5 if tp == "week00" else 0.1
        sim = simulate_field("del5q", shape=(size, size), abnormal_fraction=frac, seed=1000 + k)
        write_simulated_field(sim, root / patient / tp / f"field{k % per_sample + 1:02d}.ome.tif")
        k += 1
    done.write_text("ok\n")
    return root


def timed_run(study: Path, out: Path, **kw) -> dict:
    from fishcount.batch import run_batch

    shutil.rmtree(out, ignore_errors=True)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    r = run_batch(study, out, quiet=True, report=False, **kw)
    wall = time.perf_counter() - t0
    run = json.loads((out / "run.json").read_text())
    assert r.n_errors == 0, r.errors
    return {"wall_s": wall, "fields_s": run["timings"]["fields_s"], "n": r.n_done,
            "per_field_mean_s": run["timings"]["per_field_mean_s"],
            "per_field_cpu_mean_s": run["timings"]["per_field_cpu_mean_s"], "engine": run["engine"],
            "load_avg_1min_start": load0, "load_avg_1min_end": os.getloadavg()[0]}


_MEM_CHILD = r"""
import ctypes, gc, json, sys, tempfile, time, tracemalloc
from pathlib import Path
def status():  # current and peak resident set of this process (bytes)
    d = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                d[line[2:5].lower()] = int(line.split()[1]) * 1024
    return d
def reset_peak():  # VmHWM := VmRSS (Linux >= 4.0); False when not allowed
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False
import fishcount.batch as b
b._warm_worker()  # what a Dask worker of the local engine imports before its first task
from fishcount.panels import load_panel
path, n = sys.argv[1], int(sys.argv[2])
panel = load_panel("del5q")
def field():
    t0 = time.process_time()
    with tempfile.TemporaryDirectory() as d:
        b.process_field(path, Path(d), panel, {})
    return time.process_time() - t0
out = {"import_rss": status()["rss"], "peak_reset": reset_peak(), "fields": []}
for k in range(n):  # the same field n times in one process, as a worker analyses field after field
    reset_peak()
    cpu = field()
    s = status()
    out["fields"].append({"peak_rss": s["hwm"], "rss_after": s["rss"], "cpu_s": cpu})
gc.collect()
try:  # return freed heap to the system: what stays is code loaded on first use and live caches
    ctypes.CDLL("libc.so.6").malloc_trim(0)
except OSError:
    pass
out["trimmed_rss"] = status()["rss"]
tracemalloc.start()
field()
out["traced_peak"] = tracemalloc.get_traced_memory()[1]
print(json.dumps(out))
"""

_POOL_CHILD = r"""
import json, sys, time, tracemalloc
from pathlib import Path
import pandas as pd, pyarrow as pa
from fishcount.batch import pool_nuclei
out = Path(sys.argv[1])
table = pd.read_pickle(out / "table.pkl")
pool = pa.default_memory_pool()
tracemalloc.start()
t0 = time.perf_counter()
n = pool_nuclei(table, out)
dt = time.perf_counter() - t0
_, py_peak = tracemalloc.get_traced_memory()
arrow_peak = pool.max_memory()
import pyarrow.parquet as pq
t = pq.read_table(out / "nuclei.parquet")
print(json.dumps({"rows": n, "seconds": dt, "arrow_peak": arrow_peak, "python_peak": py_peak,
                  "pooled_arrow_bytes": t.nbytes, "pooled_pandas_bytes": int(t.to_pandas().memory_usage(deep=True).sum())}))
"""


def bench_memory(field: Path, n_fields: int = 4) -> dict:
    """Memory of one worker process analysing one field after another (a fresh subprocess).

    Peaks are the kernel's ``VmHWM`` reset before each field (``/proc/self/clear_refs``), not
    ``ru_maxrss``: a child's ``ru_maxrss`` also counts the parent's resident set copied at fork
    (before ``exec``), which inflated earlier numbers when the benchmark process itself was large.
    """
    import tifffile

    r = subprocess.run([sys.executable, "-c", _MEM_CHILD, str(field), str(n_fields)], capture_output=True,
                       text=True, check=True)
    m = json.loads(r.stdout.strip().splitlines()[-1])
    with tifffile.TiffFile(field) as tf:
        s = tf.series[0]
        stored = int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize
        f32 = int(np.prod(s.shape)) * 4
    base = m["import_rss"]
    first = m["fields"][0]["peak_rss"] - base
    steady = max(f["peak_rss"] for f in m["fields"][1:]) - base if len(m["fields"]) > 1 else first
    code = m["trimmed_rss"] - base
    res = {"field_stored_bytes": stored, "field_float32_bytes": f32, "peak_reset": m["peak_reset"],
           "worker_import_rss": base, "fields": m["fields"], "worker_trimmed_rss": m["trimmed_rss"],
           "first_field_growth_bytes": first, "steady_growth_bytes": steady,
           "retained_after_trim_bytes": code, "steady_growth_above_trimmed_bytes": steady - code,
           "traced_peak_bytes": m["traced_peak"]}
    for k in ("first_field_growth", "steady_growth", "steady_growth_above_trimmed", "traced_peak"):
        res[f"{k}_x_stored"] = res[f"{k}_bytes"] / stored
        res[f"{k}_x_float32"] = res[f"{k}_bytes"] / f32
    return res


def bench_pool(template_dir: Path, work: Path, n_fields: int) -> dict:
    """pool_nuclei over n_fields copies of one real nuclei.csv."""
    out = work / "pool"
    shutil.rmtree(out, ignore_errors=True)
    src = (template_dir / "nuclei.csv").read_text()
    rows = []
    for k in range(n_fields):
        key = f"P{k // 50:02d}/week{(k // 10) % 5:02d}/field{k % 10:02d}"
        d = out / "fields" / key
        d.mkdir(parents=True)
        (d / "nuclei.csv").write_text(src)
        rows.append({"path": f"/study/{key}.ome.tif", "field": key, "sample": key.rsplit("/", 1)[0].replace("/", "_"),
                     "patient": key.split("/")[0], "timepoint": key.split("/")[1], "week": float(key.split("/")[1][4:]),
                     "slide": "", "panel": "del5q", "files": f"/study/{key}.ome.tif"})
    pd.DataFrame(rows).to_pickle(out / "table.pkl")
    r = subprocess.run([sys.executable, "-c", _POOL_CHILD, str(out)], capture_output=True, text=True, check=True)
    return {"fields": n_fields, **json.loads(r.stdout.strip().splitlines()[-1])}


def bench_idle(seconds: float = 20.0) -> dict:
    """CPU burnt per wall second by an idle 2-worker local cluster (all its processes), with the
    runner's housekeeping intervals (``batch._QUIET_EVENT_LOOPS``) and with Dask's defaults.

    On 2 cores this CPU is taken from the field tasks, so it bounds the 2-worker speed-up; unlike
    wall-clock scaling it is robust to other jobs on a shared machine."""
    import psutil

    from fishcount import batch

    def cpu(procs):
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    from unittest import mock

    from distributed import Client

    out = {}
    for name, cfg in (("quiet", dict(batch._QUIET_EVENT_LOOPS)), ("dask_defaults", {})):
        with mock.patch.dict(batch._QUIET_EVENT_LOOPS, cfg, clear=True), \
                batch._local_cluster(2, 2**31) as cluster, Client(cluster):
            me = psutil.Process()
            time.sleep(3)
            procs = [me] + me.children(recursive=True)
            c0, t0 = cpu(procs), time.perf_counter()
            time.sleep(seconds)
            out[name] = (cpu(procs) - c0) / (time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fields", type=int, default=40)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--pool-fields", type=int, default=500)
    ap.add_argument("--work", type=Path, default=Path("/tmp/fishcount-bench-batch"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--skip", default="", help="comma list of: idle, scaling (includes the Dask overhead), memory, pool")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    study = make_study(a.work / f"study-{a.fields}-{a.size}", a.fields, a.size)
    res: dict = {"fields": a.fields, "size": a.size, "cores": os.cpu_count(), "python": platform.python_version(),
                 "simulate_s": time.perf_counter() - t0}
    print(f"study ready: {a.fields} fields of {a.size}^2 ({res['simulate_s']:.0f} s)", flush=True)
    if "idle" not in skip:
        res["idle_cpu_per_s"] = bench_idle()
        print("idle", res["idle_cpu_per_s"], flush=True)
    if "scaling" not in skip:
        res["serial"] = timed_run(study, a.work / "out-serial", workers=1)
        print("serial", res["serial"], flush=True)
        res["dask2"] = timed_run(study, a.work / "out-dask2", workers=2)
        print("dask2", res["dask2"], flush=True)
        import logging

        from fishcount.batch import _local_cluster

        # the same worker set-up as the runner's local engine, reached through scheduler=
        with _local_cluster(1, 4 * 2**30) as cluster:
            res["dask1"] = timed_run(study, a.work / "out-dask1", scheduler=cluster.scheduler_address)
        print("dask1", res["dask1"], flush=True)
        # the plain loop again, after the Dask runs: load on a shared machine drifts
        res["serial_after"] = timed_run(study, a.work / "out-serial2", workers=1)
        print("serial_after", res["serial_after"], flush=True)
        ser_f = (res["serial"]["fields_s"] + res["serial_after"]["fields_s"]) / 2
        ser_w = (res["serial"]["wall_s"] + res["serial_after"]["wall_s"]) / 2
        ser_c = (res["serial"]["per_field_cpu_mean_s"] + res["serial_after"]["per_field_cpu_mean_s"]) / 2
        res["speedup_fields"] = ser_f / res["dask2"]["fields_s"]
        res["speedup_wall"] = ser_w / res["dask2"]["wall_s"]
        # steady state: the field stage less the one-time start of the worker processes (spawned
        # interpreters importing dask and the pipeline, ~1 s on 2 cores), which a longer run amortises
        start = res["dask2"]["engine"].get("startup_s", 0.0)
        res["speedup_fields_steady"] = ser_f / (res["dask2"]["fields_s"] - start)
        d = res["dask1"]
        res["dask_overhead_per_field_s"] = (d["fields_s"] - ser_f) / a.fields
        res["dask_overhead_pct"] = 100 * (d["fields_s"] - ser_f) / ser_f
        res["dask_overhead_cpu_pct"] = 100 * (d["per_field_cpu_mean_s"] - ser_c) / ser_c
    if "memory" not in skip:
        first = sorted(study.rglob("field01.ome.tif"))[0]
        res["memory"] = bench_memory(first)
        print("memory", res["memory"], flush=True)
    if "pool" not in skip:
        tmpl = next((a.work / "out-serial" / "fields").rglob("nuclei.csv")).parent if (a.work / "out-serial").exists() \
            else None
        if tmpl is None:
            timed_run(study, a.work / "out-serial", workers=1)
            tmpl = next((a.work / "out-serial" / "fields").rglob("nuclei.csv")).parent
        res["pool"] = bench_pool(tmpl, a.work, a.pool_fields)
        print("pool", res["pool"], flush=True)
    print()
    for k in ("serial", "dask2", "dask1", "serial_after"):
        if k in res:
            used = res[k]["n"] * res[k]["per_field_cpu_mean_s"] / res[k]["fields_s"]
            res[k]["cores_used"] = used
            print(f"{k}: 1-min load average {res[k]['load_avg_1min_start']:.1f} -> {res[k]['load_avg_1min_end']:.1f}, "
                  f"CPU/field {res[k]['per_field_cpu_mean_s']:.2f} s, wall/field {res[k]['per_field_mean_s']:.2f} s, "
                  f"cores used by the field tasks {used:.2f}")
    print("| measure | value |")
    print("|---|---|")
    if "speedup_fields" in res:
        for k in ("serial", "serial_after"):
            print(f"| plain loop ({k}), {a.fields} fields {a.size}² | {a.fields / res[k]['fields_s']:.3f} fields/s "
                  f"({res[k]['per_field_mean_s']:.2f} s/field) |")
        print(f"| Dask local, 2 workers | {a.fields / res['dask2']['fields_s']:.3f} fields/s |")
        print(f"| speed-up 2 workers / 1 | {res['speedup_fields']:.2f}× (field stage), {res['speedup_wall']:.2f}× (whole run), "
              f"{res['speedup_fields_steady']:.2f}× (field stage less the "
              f"{res['dask2']['engine'].get('startup_s', 0.0):.2f} s worker start-up) |")
    if "idle_cpu_per_s" in res:
        i = res["idle_cpu_per_s"]
        print(f"| idle 2-worker local cluster, CPU-s per s (all its processes) | {i['quiet']:.4f} with the runner's "
              f"intervals, {i['dask_defaults']:.4f} with Dask's defaults |")
    if "dask_overhead_pct" in res:
        print(f"| Dask path overhead, 1 worker vs plain loop | {res['dask_overhead_pct']:+.1f} % wall "
              f"({res['dask_overhead_per_field_s'] * 1000:+.0f} ms/field, incl. cluster start-up), "
              f"{res['dask_overhead_cpu_pct']:+.1f} % CPU per field |")
    if "memory" in res:
        m = res["memory"]
        mib = 2**20

        def x(k):
            return (f"{m[k + '_bytes'] / mib:.0f} MiB = {m[k + '_x_stored']:.1f}× stored, "
                    f"{m[k + '_x_float32']:.1f}× float32")

        print(f"| field bytes | {m['field_stored_bytes'] / mib:.1f} MiB stored (uint16, all channels), "
              f"{m['field_float32_bytes'] / mib:.1f} MiB as float32 (working copy) |")
        print(f"| worker RSS after imports (baseline) | {m['worker_import_rss'] / mib:.0f} MiB |")
        print(f"| **peak RSS growth above the baseline, fields 2..{len(m['fields'])}** (steady state) | "
              f"**{x('steady_growth')}** |")
        print(f"| peak RSS growth above the baseline, first field | "
              f"{x('first_field_growth')} |")
        print(f"| of which stays after the fields + gc + malloc_trim (caches, allocator) | "
              f"{m['retained_after_trim_bytes'] / mib:.0f} MiB |")
        print(f"| steady peak above that | {x('steady_growth_above_trimmed')} |")
        print(f"| peak traced allocations (tracemalloc), one field read + analyse + write + gallery | "
              f"{x('traced_peak')} |")
        if not m["peak_reset"]:
            print("| note | /proc/self/clear_refs not writable: peaks are since process start |")
    if "pool" in res:
        p = res["pool"]
        print(f"| pooling {p['fields']} fields ({p['rows']} nuclei) | {p['seconds']:.1f} s, arrow peak "
              f"{p['arrow_peak'] / 2**20:.1f} MiB + python peak {p['python_peak'] / 2**20:.1f} MiB vs pooled table "
              f"{p['pooled_arrow_bytes'] / 2**20:.1f} MiB (arrow) |")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
