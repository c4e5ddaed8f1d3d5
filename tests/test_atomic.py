"""Atomic writes leave either the old file or the new one, never a half-written file."""
from __future__ import annotations

import pandas as pd
import pytest

from fishcount._atomic import atomic_open, atomic_path, write_csv_atomic, write_text_atomic
from fishcount.errors import FishcountError, InputError


def test_write_text_atomic_replaces(tmp_path):
    f = tmp_path / "sub" / "a.txt"
    write_text_atomic(f, "one")
    write_text_atomic(f, "two")
    assert f.read_text() == "two"
    assert [p.name for p in f.parent.iterdir()] == ["a.txt"]


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    f = tmp_path / "a.csv"
    write_csv_atomic(pd.DataFrame({"x": [1]}), f)
    with pytest.raises(RuntimeError):
        with atomic_open(f, "w") as fh:
            fh.write("partial")
            raise RuntimeError("crash mid-write")
    assert pd.read_csv(f)["x"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_atomic_path_for_libraries(tmp_path):
    f = tmp_path / "img.png"
    with atomic_path(f) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"\x89PNG")
    assert f.read_bytes() == b"\x89PNG"
    with pytest.raises(ValueError):
        with atomic_path(f) as tmp:
            tmp.write_bytes(b"half")
            raise ValueError
    assert f.read_bytes() == b"\x89PNG" and len(list(tmp_path.iterdir())) == 1


def test_errors_are_one_line_and_name_the_source():
    e = InputError("/data/x.tif", "not a TIFF file\n(second line)")
    assert str(e) == "/data/x.tif: not a TIFF file (second line)"
    assert isinstance(e, FishcountError) and e.source == "/data/x.tif"
    assert str(FishcountError(None, "bad")) == "bad"


def test_written_files_get_ordinary_permissions(tmp_path):
    import os

    f = tmp_path / "report.html"
    write_text_atomic(f, "<html></html>")
    mask = os.umask(0)
    os.umask(mask)
    assert (f.stat().st_mode & 0o777) == (0o666 & ~mask)


# --- sets of files and folders: a failure never loses the previous result ------------------------------------
def _folder(path, **files):
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name.replace("__", ".")).write_text(text)
    return path


@pytest.mark.parametrize("exchange", [True, False])
def test_swap_in_folder_keeps_journals_and_never_loses_the_old_result(tmp_path, monkeypatch, exchange):
    import os

    from fishcount import _atomic

    if not exchange:  # a file system without RENAME_EXCHANGE (NFS): move aside, rename in, move back on failure
        monkeypatch.setattr(_atomic, "_exchange", lambda a, b: False)
    final = _folder(tmp_path / "field01", nuclei__csv="same", overlay__png="old", review__ann__jsonl="edits")
    _atomic.swap_in_folder(_folder(tmp_path / "new", nuclei__csv="same", overlay__png="new"), final)
    assert (final / "overlay.png").read_text() == "new" and (final / "review.ann.jsonl").read_text() == "edits"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["field01"]
    # other nuclei: the journal no longer fits them; kept beside them as .stale
    _atomic.swap_in_folder(_folder(tmp_path / "new", nuclei__csv="new"), final)
    assert (final / "nuclei.csv").read_text() == "new" and (final / "review.ann.jsonl.stale").read_text() == "edits"
    assert not (final / "review.ann.jsonl").exists()
    # the rename into place fails (a full disk, an I/O error): the previous result is where it was
    real = os.rename

    def failing(a, b):
        if str(a).endswith("newer"):
            raise OSError(5, "Input/output error")
        return real(a, b)

    monkeypatch.setattr(_atomic, "_exchange", lambda a, b: False)
    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(OSError, match="Input/output error"):
        _atomic.swap_in_folder(_folder(tmp_path / "newer", nuclei__csv="newer"), final)
    assert (final / "nuclei.csv").read_text() == "new" and (final / "review.ann.jsonl.stale").exists()
    monkeypatch.setattr(os, "rename", real)
    # without overwrite an existing folder (another process wrote it meanwhile) is never replaced
    with pytest.raises(FileExistsError):
        _atomic.swap_in_folder(tmp_path / "newer", final, overwrite=False)
    assert (final / "nuclei.csv").read_text() == "new"


def test_commit_files_is_all_or_nothing(tmp_path, monkeypatch):
    import os

    from fishcount import _atomic

    a, b = tmp_path / "response.csv", tmp_path / "plot.png"
    a.write_text("old a")
    b.write_text("old b")
    with _atomic.staged_files([a, b], overwrite=True) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    real = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append(dst)
        if str(dst) == str(b) and not str(src).endswith(".old"):  # the new file's rename in, not the restore
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError, match="No space left on device") as ei:
        with _atomic.staged_files([a, b], overwrite=True) as (ta, tb):
            ta.write_text("newer a")
            tb.write_text("newer b")
    monkeypatch.setattr(os, "replace", real)
    assert (a.read_text(), b.read_text()) == ("new a", "new b")  # both as before, neither half-updated
    assert ei.value.filename == str(b)  # the message names the file meant
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "response.csv"]
    with pytest.raises(FileExistsError):
        with _atomic.staged_files([a], overwrite=False):
            pass
    # a failure while writing leaves the targets alone and no temporary file
    with pytest.raises(RuntimeError):
        with _atomic.staged_files([a, b], overwrite=True) as (ta, tb):
            ta.write_text("x")
            raise RuntimeError("crash")
    assert a.read_text() == "new a" and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "response.csv"]


def test_a_full_disk_names_the_file_meant(tmp_path, monkeypatch):
    import os

    real = os.replace

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError) as ei:
        write_text_atomic(tmp_path / "run.json", "{}")
    monkeypatch.setattr(os, "replace", real)
    assert ei.value.filename == str(tmp_path / "run.json") and ei.value.errno == 28


def test_segmentation_pair_simulated_field_and_report_out_are_written_as_sets(tmp_path, monkeypatch):
    """labels.tif and nuclei_qc.csv (segment), an image and its truth (simulate) are one set each: a failure in
    the middle leaves the previous pair; `report --out` does not replace a file that is not a report."""
    import os

    import numpy as np
    import tifffile
    from click.testing import CliRunner

    import fishcount as fc
    from fishcount.analyze import write_segmentation
    from fishcount.cli import main

    sim = fc.simulate_field("del5q", shape=(96, 96), seed=2)
    seg = fc.segment_nuclei(sim.image[0], sim.pixel_size_um)
    target = write_segmentation(seg, tmp_path / "s" / "f")
    n0 = len(pd.read_csv(target / "nuclei_qc.csv"))
    assert tifffile.imread(target / "labels.tif").max() == n0
    with pytest.raises(FishcountError, match="outputs already exist"):
        write_segmentation(seg, target)
    other = fc.segment_nuclei(np.where(sim.labels > 0, sim.image[0], 0).astype(np.float32)[:, :48],
                              sim.pixel_size_um)
    real = os.replace

    def qc_fails(src, dst):
        if str(dst).endswith("nuclei_qc.csv") and not str(src).endswith(".old"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", qc_fails)
    with pytest.raises(FishcountError, match=r"nuclei_qc.csv: cannot write outputs \(No space left on device\)"):
        write_segmentation(other, target, overwrite=True)
    monkeypatch.setattr(os, "replace", real)
    assert tifffile.imread(target / "labels.tif").shape == (96, 96) and len(pd.read_csv(target / "nuclei_qc.csv")) == n0

    paths = fc.write_simulated_field(sim, tmp_path / "sim" / "field01.ome.tif")
    with pytest.raises(InputError, match=r"field01.ome.tif: exists; refusing to overwrite \(pass --overwrite\)"):
        fc.write_simulated_field(fc.simulate_field("del5q", shape=(96, 96), seed=3), paths["image"])
    monkeypatch.setattr(os, "replace", lambda s, d: (_ for _ in ()).throw(OSError(28, "No space left on device"))
                        if str(d).endswith("_truth_labels.tif") and not str(s).endswith(".old") else real(s, d))
    with pytest.raises(OSError):
        fc.write_simulated_field(fc.simulate_field("del5q", shape=(96, 96), seed=3), paths["image"], overwrite=True)
    monkeypatch.setattr(os, "replace", real)
    assert np.array_equal(tifffile.imread(paths["image"]), sim.image)  # the image still matches its truth
    assert np.array_equal(tifffile.imread(paths["labels"]), sim.labels)

    notes = tmp_path / "notes.csv"
    notes.write_text("my,table\n")
    r = CliRunner().invoke(main, ["report", str(tmp_path), "--out", str(notes)])
    assert r.exit_code == 2 and "exists and is not a fishcount report" in r.output and notes.read_text() == "my,table\n"


def test_analyze_removes_what_a_killed_analysis_left(tmp_path):
    """An old `.<stem>.*.tmp` folder (a killed analysis) is removed by the next write of that field; a fresh one
    (another analysis writing now) is left alone."""
    import os
    import time

    import fishcount as fc

    sim = fc.simulate_field("del5q", shape=(96, 96), seed=2)
    res = fc.analyze_field(sim.image, pixel_size_um=sim.pixel_size_um)
    old = tmp_path / f".{res.stem}.abc123.tmp"
    fresh = tmp_path / f".{res.stem}.def456.tmp"
    for d in (old, fresh):
        d.mkdir()
        (d / "overlay.png").write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    fc.write_field_result(res, tmp_path)
    assert not old.exists() and fresh.exists() and (tmp_path / res.stem / "nuclei.csv").is_file()
