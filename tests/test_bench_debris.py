"""benchmarks/bench_debris.py adds the specks it says it adds: their number, peak and width."""
import numpy as np
from scipy import ndimage as ndi

from _benchmarks import load_benchmark

bd = load_benchmark("bench_debris")


def test_specks_have_the_requested_number_peak_and_width():
    img = np.full((200, 200), 100, np.uint16)
    nuclei = np.zeros((200, 200), bool)
    nuclei[20:60, 20:60] = True
    img[nuclei] = 1100  # nuclei 1000 above the background
    out = bd.add_specks(img, nuclei, n=5, brightness=4.0, fwhm_px=4.0, seed=1)
    diff = out.astype(np.float64) - img
    assert out.dtype == np.uint16 and diff.min() >= 0
    peaks = ndi.label(diff > 0.5 * 4000)[1]
    assert 1 <= peaks <= 5  # 5 specks (two may overlap)
    assert abs(diff.max() - 4000) < 0.2 * 4000  # peak 4x the nuclei's contrast (sampling: a bit below)
    # FWHM 4 px: the area above half the peak of one isolated speck is ~pi (FWHM/2)^2 = 12.6 px
    lab, n = ndi.label(diff > 0.5 * diff.max())
    assert 6 <= np.bincount(lab.ravel())[1:].min() <= 20


def test_main_runs_on_one_field(capsys):
    assert bd.main(["--seeds", "3-3", "--specks", "5"]) == 0
    out = capsys.readouterr().out
    assert "debris pixel size: F1" in out and "clean  estimated : F1" in out
