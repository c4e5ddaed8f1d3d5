"""Sample data: a simulated del(5q) field (a file from the repository's ``sample_images/`` when
present, else one simulated on the spot with :func:`fishcount.simulate_field`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

#: Where the repository keeps its sample study (``sample_images/`` beside ``plugins/``).
SAMPLE_DIR = Path(__file__).resolve().parents[4] / "sample_images"


def sample_image_path() -> Path | None:
    """First field image of ``sample_images/`` (sorted), or None if the folder is not there."""
    if not SAMPLE_DIR.is_dir():
        return None
    for pattern in ("*.ome.tif", "*.ome.tiff", "*.tif", "*.tiff"):
        found = sorted(p for p in SAMPLE_DIR.rglob(pattern) if "truth" not in p.name and "label" not in p.name)
        if found:
            return found[0]
    return None


def make_sample_field(seed: int = 3) -> list[tuple[Any, dict, str]]:
    """npe2 sample-data contribution: DAPI + EGR1 + D5S23 image layers of a simulated field."""
    import fishcount as fc

    from ._layers import field_layers

    panel = fc.load_panel("del5q")
    path = sample_image_path()
    if path is not None:
        try:
            field = fc.read_field(path, panel=panel)
            return field_layers(field, panel, {"image": str(path), "sample": True})
        except fc.FishcountError:
            pass
    sim = fc.simulate_field(panel, shape=(512, 512), seed=seed, abnormal_fraction=0.4)
    field = fc.field_from_arrays(sim.channel("DAPI"), {s: sim.channel(s) for s in sim.signal_names},
                                 sim.pixel_size_um, name=f"simulated_del5q_seed{seed}", panel=panel)
    return field_layers(field, panel, {"image": "<simulated>", "sample": True, "seed": seed})
