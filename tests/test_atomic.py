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
