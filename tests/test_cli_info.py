"""``fishcount info``: a readable block per field, one line per problem file, exit code 2 on any failure."""
from __future__ import annotations

from pathlib import Path

import pytest
import tifffile
from click.testing import CliRunner

from fishcount.cli import main

from test_io import BAD_KINDS, NAMES, _ome, _stack, make_bad


def _run(*args: str):
    return CliRunner().invoke(main, ["info", *map(str, args)])


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_info_ome_block(tmp_path):
    p = _ome(tmp_path / "field01.ome.tif", _stack(n_z=3), "ZCYX", NAMES, 110, "nm")
    r = _run(p)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert out.startswith("field01\n")
    for piece in ("OME-TIFF, axes ZCYX, shape (3, 3, 24, 20), uint16", "z-planes:     3 (max projection; z step not stored",
                  "names from: OME Channel Name", "DAPI       <- channel 0 'DAPI'", "EGR1       <- channel 1 'EGR1'",
                  "0.11 µm [OME PhysicalSizeX]", "panel:        del5q"):
        assert piece in out, out
    _no_traceback(r)


def test_info_options_channels_pixel_size_z_plane_panel(tmp_path):
    p = _ome(tmp_path / "f.ome.tif", _stack(n_z=2, n_c=2), "ZCYX", ["x", "y"])
    r = _run(p, "--panel", "cep8", "--channels", "CEP8, DAPI", "--pixel-size", "0.2", "--z-plane", "1")
    assert r.exit_code == 0, r.output
    assert "names from: user (--channels)" in r.stdout and "DAPI       <- channel 1 'DAPI'" in r.stdout
    assert "0.2 µm [user]" in r.stdout and "2 (plane 1 used;" in r.stdout and "panel:        cep8" in r.stdout


def test_info_groups_per_channel_files_and_says_assumed_order(tmp_path):
    data = _stack()
    for name, c in (("DAPI", 0), ("EGR1", 1), ("D5S23", 2)):
        tifffile.imwrite(tmp_path / f"field01_{name}.tif", data[0, c], metadata=None)
    tifffile.imwrite(tmp_path / "plain.tif", data[0], metadata=None, photometric="minisblack")
    r = _run(tmp_path)
    assert r.exit_code == 0, r.output
    blocks = r.stdout.strip().split("\n\n")
    assert len(blocks) == 2
    assert blocks[0].startswith("field01\n  files:") and "3 per-channel files" in blocks[0]
    assert "names from: file names" in blocks[0]
    assert blocks[1].startswith("plain\n") and "names from: assumed panel order" in blocks[1]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_info_bad_input_one_line_exit_2(tmp_path, kind):
    source, kwargs, match = make_bad(kind, tmp_path)
    args = list(source) if isinstance(source, list) else [source]
    if "channels" in kwargs:
        args += ["--channels", ",".join(kwargs["channels"])]
    if "pixel_size_um" in kwargs:
        args += ["--pixel-size", str(kwargs["pixel_size_um"])]
    if "axes" in kwargs:
        args += ["--axes", kwargs["axes"]]
    if kwargs.get("z_mode") == "plane":
        args += ["--z-plane", str(kwargs["z_plane"])]
    if kwargs.get("require_pixel_size"):
        r = _run(*args)  # info reports a missing pixel size; only --require-pixel-size fails on it
        assert r.exit_code == 0 and "pixel size:   unknown" in r.stdout
        args.append("--require-pixel-size")
    r = _run(*args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("fishcount: error: ") and match in lines[0]
    names = [Path(s).name for s in (source if isinstance(source, list) else [source])]
    assert any(n in lines[0] for n in names)
    _no_traceback(r)


def test_info_reports_good_files_then_fails(tmp_path):
    good = _ome(tmp_path / "good.ome.tif", _stack()[0], "CYX", NAMES)
    bad = tmp_path / "bad.tif"
    bad.write_text("not an image")
    r = _run(bad, tmp_path / "missing.tif", good)
    assert r.exit_code == 2
    assert r.stdout.startswith("good\n")
    err = r.stderr.strip().splitlines()
    assert len(err) == 2
    assert err[0].startswith("fishcount: error: ") and "missing.tif: file not found" in err[0]
    assert "bad.tif: not a TIFF file" in err[1]
    _no_traceback(r)


def test_info_empty_folder_and_bad_panel(tmp_path):
    (tmp_path / "empty").mkdir()
    r = _run(tmp_path / "empty")
    assert r.exit_code == 2 and "empty: folder holds no .tif/.tiff files" in r.stderr
    good = _ome(tmp_path / "good.ome.tif", _stack()[0], "CYX", NAMES)
    r = _run(good, "--panel", "nopanel")
    assert r.exit_code == 2 and r.stderr.startswith("fishcount: error: nopanel: unknown panel")
    _no_traceback(r)


def test_info_needs_an_image():
    r = CliRunner().invoke(main, ["info"])
    assert r.exit_code == 2 and "Missing argument" in r.stderr


def test_info_saturation_is_reported(tmp_path):
    data = _stack()
    data[0, 2, :2, :] = 65535
    p = _ome(tmp_path / "sat.ome.tif", data[0], "CYX", NAMES)
    r = _run(p)
    assert "D5S23      <- channel 2 'D5S23'" in r.stdout
    assert f"{2 * data.shape[-1]} px saturated = {100 * 2 / 24:.3g}%" in r.stdout
    assert r.stdout.count("saturated") == 1


def test_python_dash_m_fishcount_is_the_command():
    """``python -m fishcount`` runs the same command line (where the script is not on PATH)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "fishcount", "info", "no-such-file.tif"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "fishcount: error: no-such-file.tif: file not found"
    r = subprocess.run([sys.executable, "-m", "fishcount", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("Usage: fishcount ")


def test_info_and_segment_point_out_an_unusual_pixel_size(tmp_path):
    """ImageJ writes 1 µm per pixel when no calibration was set: info notes it and segment warns (a FISH image
    is about 0.06-0.3 µm per pixel); a pixel size the user typed is theirs."""
    import fishcount as fc

    u = fc.simulate_field("del5q", shape=(128, 128), seed=1).image
    p = tmp_path / "ij1um.tif"
    tifffile.imwrite(p, u, imagej=True, resolution=(1, 1), metadata={"axes": "CYX", "unit": "micron"})
    r = _run(p)
    assert r.exit_code == 0 and "note:         pixel size 1 µm (ImageJ) is unusual for FISH" in r.stdout
    r = CliRunner().invoke(main, ["segment", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0 and "warning: pixel size 1 µm (file metadata) is unusual for FISH" in r.output
    r = CliRunner().invoke(main, ["segment", str(p), "--out", str(tmp_path / "o2"), "--pixel-size", "0.16"])
    assert r.exit_code == 0 and "warning" not in r.output


def test_cli_front_door_usage_errors_units_pipes_and_interrupts(tmp_path):
    """A usage error is one line (`fishcount: error: ...`, exit 2); a length may carry its unit; output piped into
    `head` does not stop the work or hide its exit code; Ctrl-C is one line and exit 130."""
    import subprocess
    import sys

    import fishcount as fc

    r = CliRunner().invoke(main, ["analyze", "x.tif", "--ouput", "y"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and r.output.startswith(
        "fishcount: error: No such option '--ouput'. Did you mean '--out'? (see `") and "analyze --help`)" in r.output
    r = CliRunner().invoke(main, ["analyze", "x.tif", "--out", "y", "--pixel-size", "abc"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "is not a length: give µm as a number" in r.output
    path = fc.write_simulated_field(fc.simulate_field("del5q", shape=(96, 96), seed=1), tmp_path / "f.ome.tif")["image"]
    for given in ("0.2um", "0.2 µm", "200nm", "0.2"):
        r = CliRunner().invoke(main, ["info", str(path), "--pixel-size", given])
        assert r.exit_code == 0 and "pixel size:   0.2 µm [user]" in r.output, (given, r.output)
    # piped into a reader that stops after one line: every field is still written, the exit code is the command's
    out = tmp_path / "sims"
    cmd = (f"{sys.executable} -m fishcount simulate --shape 64,64 --fields 6 --out {out} | head -1; "
           "echo \"rc=${PIPESTATUS[0]}\"")
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert res.stdout.strip().endswith("rc=0") and len(list(out.glob("*.ome.tif"))) == 6, (res.stdout, res.stderr)
    # Ctrl-C (SIGINT) while working: one line, exit 130
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-m", "fishcount", "simulate", "--shape", "1024,1024", "--fields", "50",
                          "--out", str(tmp_path / "big")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and err.strip().splitlines()[-1] == (
        "fishcount: interrupted; finished work is kept: rerun the same command to resume"), err


def test_implausible_pixel_size_and_too_many_workers(tmp_path, monkeypatch):
    """A pixel size typed in nm (160) is refused before any work, in every command (info included); --workers far
    beyond the machine is capped with a note, not started (1000 worker processes filled the memory)."""
    from fishcount import batch

    for cmd in (["info", "x.tif"], ["analyze", "x.tif", "--out", str(tmp_path / "a")],
                ["run", str(tmp_path), "--out", str(tmp_path / "r")]):
        r = CliRunner().invoke(main, [*cmd, "--pixel-size", "160"])
        assert r.exit_code == 2 and "160 µm is not the pixel size of a FISH image" in r.output \
            and "in nm that is 0.16 µm" in r.output, r.output
    seen = {}

    def fake_execute(tasks, *, workers, scheduler, progress, fn=None):
        seen.setdefault("workers", workers)
        return batch._execute(tasks, workers=1, scheduler=None, progress=progress, fn=fn)

    monkeypatch.setattr(batch, "_execute", fake_execute)
    monkeypatch.setattr(batch, "default_workers", lambda field_bytes=0: 2)
    import fishcount as fc

    for k in range(3):
        fc.write_simulated_field(fc.simulate_field("del5q", shape=(64, 64), seed=k),
                                 tmp_path / "study" / "P01" / f"week{k:02d}" / "field01.ome.tif")
    r = CliRunner().invoke(main, ["run", str(tmp_path / "study"), "--out", str(tmp_path / "o"), "--workers", "1000",
                                  "--no-report"])
    assert seen["workers"] == 2 and "note: --workers 1000: using 2 (one per core, as memory allows)" in r.output


def test_shipped_ids_in_another_case_and_hints_for_the_wrong_input(tmp_path):
    """DEL5Q is del5q and TRIAL_FISH is trial_fish; `run` on a file and `cohort` on a samples table say what they
    expect; `response` says where it wrote."""
    import fishcount as fc
    from fishcount.response import load_criteria

    assert fc.load_panel("DEL5Q").id == "del5q" and load_criteria("TRIAL_FISH").id == "trial_fish"
    f = tmp_path / "f.ome.tif"
    fc.write_simulated_field(fc.simulate_field("del5q", shape=(64, 64), seed=1), f)
    r = CliRunner().invoke(main, ["run", str(f), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "is a file, not a study folder" in r.output and "fishcount analyze" in r.output
    s = tmp_path / "samples.csv"
    s.write_text("patient,week,nuclei_scored,nuclei_abnormal\nP1,0,200,120\nP1,16,200,2\n")
    r = CliRunner().invoke(main, ["cohort", str(s)])
    assert r.exit_code == 2 and "give the response table, response.csv" in r.output
    r = CliRunner().invoke(main, ["response", str(s), "--out", str(tmp_path / "r"), "--criteria", "TRIAL_FISH"])
    assert r.exit_code == 0 and f"wrote {tmp_path / 'r' / 'response.csv'}" in r.output \
        and "1 trajectory plot(s)" in r.output, r.output


def test_library_errors_in_the_words_of_the_command_line(tmp_path):
    import fishcount as fc

    f = tmp_path / "f.ome.tif"
    fc.write_simulated_field(fc.simulate_field("del5q", shape=(64, 64), seed=1), f)
    cases = [(["simulate", "--out", str(tmp_path / "s"), "--set", "touching_fraction=5", "--shape", "64,64"],
              "fishcount: error: --set touching_fraction: must be in [0, 1], got 5.0"),
             (["analyze", str(f), "--out", str(tmp_path / "a"), "--threshold", "FOO=5"],
              "fishcount: error: --threshold: unknown signal 'FOO'"),
             (["analyze", str(f), "--out", str(tmp_path / "b"), "--z-plane", "5"], "--z-plane 5 is out of range"),
             (["cutoff", str(f), "--out", str(tmp_path / "c.toml"), "--confidence", "95"],
              "Invalid value for '--confidence'")]
    for args, want in cases:
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and want in r.output and r.output.count("\n") == 1, (args, r.output)
