"""Tests of fishcount.report: content, escaping, errors, and rendering in headless Chromium."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fishcount.errors import InputError
from fishcount.report import trajectory_png, write_report
from fishcount.response import classify_response
from fishcount.scoring import FISH_CAVEAT, score_samples

PNG = b"\x89PNG\r\n\x1a\n"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _nuclei(patient: str, timepoint: str, week: float, n: int, n_del: int, n_excluded: int = 5) -> pd.DataFrame:
    calls = ["del5q"] * n_del + ["normal"] * (n - n_del) + ["normal"] * n_excluded
    scorable = [True] * n + [False] * n_excluded
    reason = [""] * n + ["border"] * n_excluded
    pattern = ["1O2G" if c == "del5q" else "2O2G" for c in calls]
    return pd.DataFrame({"patient": patient, "timepoint": timepoint, "week": week,
                         "sample": f"{patient}_{timepoint}", "field": f"{patient}/{timepoint}/field01",
                         "panel": "del5q", "label": np.arange(1, len(calls) + 1), "call": calls,
                         "pattern": pattern, "scorable": scorable, "exclusion_reason": reason})


def make_run(tmp: Path, patient_b: str = "P<02>&") -> Path:
    """A run folder as `fishcount run` writes it, from the real scoring and response functions."""
    run = tmp / "run"
    run.mkdir()
    nuclei = pd.concat([
        _nuclei("P01", "week00", 0, 200, 120), _nuclei("P01", "week16", 16, 200, 2),
        _nuclei(patient_b, "week00", 0, 200, 100), _nuclei(patient_b, "week16", 16, 150, 70),
    ], ignore_index=True)
    nuclei.to_parquet(run / "nuclei.parquet")
    samples = score_samples(nuclei, "del5q")
    samples["sample"] = samples["patient"] + "_" + samples["timepoint"]
    samples.to_csv(run / "samples.csv", index=False)
    res = classify_response(samples)
    res.patients.to_csv(run / "response.csv", index=False)
    res.timepoints.to_csv(run / "response_timepoints.csv", index=False)
    pd.DataFrame([{"file": "/data/P01/week16/field09.tif", "stage": "read", "message": "not a TIFF <file>",
                   "sample": "P01_week16"}]).to_csv(run / "errors.csv", index=False)
    (run / "run.json").write_text(json.dumps({
        "fishcount_version": "0.1.0", "created_utc": "2026-01-01T00:00:00Z", "panel": {"id": "del5q", "sha256": "ab" * 32},
        "criteria": {"id": "trial_fish"}, "counts": {"fields": 4, "errors": 1},
        "warnings": {"P01/week00/field01": ["the nuclei measure 21.8 µm"]},
        "thresholds": {"P01/week00/field01": {"EGR1": 4.5, "D5S23": 5.0}},
        "versions": {"numpy": np.__version__}, "timings": {"total_s": 1.0}}))
    # one nucleus gallery, as the batch runner writes it per field
    from fishcount.overlay import save_png

    save_png(np.full((20, 60, 3), 200, np.uint8), run / "fields" / "P01" / "week00" / "field01" / "gallery.png")
    return run


def test_report_content(tmp_path):
    run = make_run(tmp_path)
    path = write_report(run)
    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # one section per patient, names escaped
    assert "id='patient-P01'" in page
    assert "Patient P&lt;02&gt;&amp;" in page and "P<02>&" not in page
    # response categories of the real classifier: P01 120/200 -> 2/200 is major; the other's only follow-up has
    # 150 nuclei (limited), which sets no best response (R12)
    resp = pd.read_csv(run / "response.csv")
    assert set(resp["best_response"]) == {"major", "not_evaluable"}
    for cat in resp["best_response"]:
        assert f"<td class='cat'>{cat}</td>" in page
    # counts, ISCN, adequacy, caveat, QC, thresholds, errors, metadata
    samples = pd.read_csv(run / "samples.csv")
    for iscn in samples["iscn"]:
        assert iscn.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in page
    assert "adequacy: limited" in page  # the 150-nucleus sample
    assert FISH_CAVEAT in page
    assert "excluded: border" in page
    assert "Detection thresholds used" in page and "4.50" in page
    assert "not a TIFF &lt;file&gt;" in page and "completed with 1 error" in page
    # each sample says beside its numbers which of its fields failed or were doubtful (errors.csv sample column,
    # run.json warnings by field)
    w16 = page.split("Sample P01_week16")[1].split("</details>")[0]
    assert "error: /data/P01/week16/field09.tif: not a TIFF &lt;file&gt;" in w16 and "href='#qc'" in w16
    w00 = page.split("Sample P01_week00")[1].split("</details>")[0]
    assert "warning: P01/week00/field01: the nuclei measure 21.8 µm" in w00 and "field09" not in w00
    assert "fishcount 0.1.0" in page and "trial_fish" in page
    # self-contained: every image embedded, no external resource, no script
    srcs = re.findall(r"src='([^']*)'", page)
    assert len(srcs) == 2 + 1  # two trajectories and one gallery
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_report_out_and_reruns_identically(tmp_path):
    run = make_run(tmp_path)
    other = tmp_path / "elsewhere" / "r.html"
    assert write_report(run, other) == other
    assert other.read_bytes() == write_report(run).read_bytes()


def test_report_errors(tmp_path):
    with pytest.raises(InputError, match="run folder not found"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="samples.csv: not found"):
        write_report(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "samples.csv").write_text("sample,week\nA,0\n")
    with pytest.raises(InputError, match="column 'patient' is missing"):
        write_report(bad)
    run = make_run(tmp_path)
    (run / "run.json").write_text("{not json")
    with pytest.raises(InputError, match="run.json: not valid JSON"):
        write_report(run)


def test_report_without_response_tables(tmp_path):
    """A folder with samples only (e.g. all response inputs missing) still renders, saying so."""
    run = make_run(tmp_path)
    for name in ("response.csv", "response_timepoints.csv", "errors.csv", "run.json", "nuclei.parquet"):
        (run / name).unlink()
    page = write_report(run).read_text(encoding="utf-8")
    assert page.count("No response row for this patient") == 2
    assert "<h3>Errors</h3><p class='neg'>none</p>" in page


def test_trajectory_png(tmp_path):
    run = make_run(tmp_path)
    tp = pd.read_csv(run / "response_timepoints.csv")
    png = trajectory_png(tp[tp["patient"] == "P01"], {"patient": "P01", "best_response": "major"})
    assert png.startswith(PNG) and len(png) > 5000


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert exe, "Chromium is needed for the report test: apt-get install chromium (make test installs it)"
    return exe


def render_in_chromium(html: Path, tmp: Path) -> tuple[str, str, Path]:
    """Load a page in headless Chromium: (DOM after load, console log, screenshot path)."""
    exe = _chromium()
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp / 'chrome-profile'}"]
    url = html.resolve().as_uri()
    dom = subprocess.run([exe, *flags, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp / "shot.png"
    s = subprocess.run([exe, *flags, "--window-size=1200,1600", f"--screenshot={shot}", url],
                       capture_output=True, text=True, timeout=120)
    assert s.returncode == 0, s.stderr[-2000:]
    return dom.stdout, dom.stderr, shot


@pytest.mark.slow
def test_report_renders_in_chromium(tmp_path):
    run = make_run(tmp_path)
    dom, log, shot = render_in_chromium(write_report(run), tmp_path)
    assert "id=\"patient-P01\"" in dom and "Patient P01" in dom
    assert "Cytogenetic response (FISH)" in dom
    # no page errors: console errors and failed loads are logged as CONSOLE / net errors
    bad = [ln for ln in log.splitlines() if "CONSOLE" in ln or "Uncaught" in ln or "net::ERR" in ln]
    assert not bad, bad
    data = shot.read_bytes()
    assert data.startswith(PNG)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape[1] == 1200 and img.std() > 10  # something was drawn, not a blank page


@pytest.mark.slow
def test_chromium_check_catches_a_broken_page(tmp_path):
    """The console check above is not vacuous: a page with a script error is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction()</script></body></html>")
    _, log, _ = render_in_chromium(page, tmp_path)
    assert any("CONSOLE" in ln and "undefinedFunction" in ln for ln in log.splitlines())


def test_report_cli(tmp_path):
    from click.testing import CliRunner

    from fishcount.cli import main

    run = make_run(tmp_path)
    res = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0 and res.output.strip() == f"wrote {tmp_path / 'r.html'}"
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    res = CliRunner().invoke(main, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2
    assert res.output.strip() == f"fishcount: error: {tmp_path / 'missing'}: run folder not found"


def test_a_patient_scored_with_two_panels_gets_a_section_per_panel(tmp_path):
    """Each panel's response, trajectory and counts in its own section; the summary names the panel; a call of
    the other panel is not listed as 0 nuclei."""
    from fishcount.report import write_report

    samples = pd.DataFrame({
        "sample": ["a", "b", "c", "d"], "patient": ["P2"] * 4, "timepoint": ["bl", "w16", "bl", "w16"],
        "week": [0, 16, 0, 16], "panel": ["cep8", "cep8", "kmt2a", "kmt2a"], "nuclei_scored": [200] * 4,
        "nuclei_abnormal": [80, 2, 60, 55], "clone_pct": [40.0, 1.0, 30.0, 27.5], "ci_low_pct": [33, 0.1, 24, 21],
        "ci_high_pct": [47, 3.6, 37, 34], "cutoff_pct": [3.8] * 4, "adequacy": ["adequate"] * 4,
        "n_trisomy8": [80, 2, None, None], "n_rearranged": [None, None, 60, 55]})
    samples.to_csv(tmp_path / "samples.csv", index=False)
    pd.DataFrame({"patient": ["P2", "P2"], "panel": ["cep8", "kmt2a"], "best_response": ["major", "none"],
                  "endpoint_response": ["major", "none"]}).to_csv(tmp_path / "response.csv", index=False)
    # a mixed-panel run.json: no single "panel", each panel under "panels"; the run metadata lists both
    (tmp_path / "run.json").write_text(json.dumps({"panel": None, "panels": {
        "cep8": {"id": "cep8", "sha256": "a" * 64}, "kmt2a": {"id": "kmt2a", "sha256": "b" * 64}}}))
    html = write_report(tmp_path).read_text(encoding="utf-8")
    meta = html.split("<section id='run'>")[1].split("</section>")[0]
    assert "cep8 (sha256 aaaa" in meta and "kmt2a (sha256 bbbb" in meta, meta
    cep8 = html.index("Patient P2 · panel cep8")
    kmt2a = html.index("Patient P2 · panel kmt2a")
    assert "<th>panel</th>" in html.split("<h2>Summary</h2>")[1].split("</table>")[0]
    assert "major" in html[cep8:kmt2a] and "trisomy8" not in html[kmt2a:]
