"""Reading fields: every layout made on the fly with tifffile, every bad input, matching properties."""
from __future__ import annotations

import re
import string
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

import fishcount as fc
from fishcount import io as fio
from fishcount.errors import InputError
from fishcount.panels import load_panel

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEL5Q = load_panel("del5q")
NAMES = ["DAPI", "EGR1", "D5S23"]
NY, NX = 24, 20


def _stack(n_c: int = 3, n_z: int = 1, seed: int = 0) -> np.ndarray:
    """(Z, C, Y, X) uint16; channel c is c*1000 + noise, so a mix-up of channels is visible."""
    rng = np.random.default_rng(seed)
    base = np.arange(n_c, dtype=np.uint16)[None, :, None, None] * 1000 + 100
    return (base + rng.integers(0, 500, size=(n_z, n_c, NY, NX))).astype(np.uint16)


def _expect(field: fc.Field, zcyx: np.ndarray, order=(0, 1, 2), z: int | None = None) -> None:
    """The field's DAPI/EGR1/D5S23 are channels ``order`` of ``zcyx`` (max over z unless z given)."""
    proj = zcyx.max(axis=0) if z is None else zcyx[z]
    np.testing.assert_array_equal(field.dapi, proj[order[0]].astype(np.float32))
    np.testing.assert_array_equal(field.probes["EGR1"], proj[order[1]].astype(np.float32))
    np.testing.assert_array_equal(field.probes["D5S23"], proj[order[2]].astype(np.float32))
    assert field.dapi.dtype == np.float32 and list(field.probes) == ["EGR1", "D5S23"]


def _ome(path: Path, data: np.ndarray, axes: str, names=None, size=None, unit=None) -> Path:
    assert path.name.endswith(".ome.tif")  # tifffile writes OME-XML only to .ome.tif names
    md: dict = {"axes": axes}
    if names is not None:
        md["Channel"] = {"Name": list(names)}
    if size is not None:
        md.update(PhysicalSizeX=size, PhysicalSizeY=size)
        if unit is not None:
            md.update(PhysicalSizeXUnit=unit, PhysicalSizeYUnit=unit)
    tifffile.imwrite(path, data, metadata=md)
    return path


def _plain(path: Path, data: np.ndarray, **kw) -> Path:
    """A TIFF without OME/ImageJ/shape metadata (one page per leading plane)."""
    tifffile.imwrite(path, data, metadata=None, photometric="minisblack", **kw)
    return path


# -------------------------------------------------------------------------------------------
# names
# -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, stem",
    [("a/field01.ome.tif", "field01"), ("field01.ome.tiff", "field01"), ("f.TIF", "f"), ("x.tiff", "x"),
     ("/d/p_1.2.tif", "p_1.2"), ("notes.txt", "notes.txt"), (".tif", ".tif")],
)
def test_stem_of(name, stem):
    assert fc.stem_of(name) == stem


@settings(deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits + "_-. ", min_size=1, max_size=20).filter(lambda s: s.strip(". ") == s and not s.lower().endswith(".ome")),
       st.sampled_from([".tif", ".tiff", ".ome.tif", ".ome.tiff", ".TIF", ".OME.TIFF"]))
def test_stem_of_strips_any_tiff_ending(name, ext):
    assert fc.stem_of("some/dir/" + name + ext) == name


# -------------------------------------------------------------------------------------------
# layouts
# -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, unit, expected_um", [(0.11, None, 0.11), (0.11, "µm", 0.11), (110, "nm", 0.11), (0.00011, "mm", 0.11)])
def test_ome_names_and_pixel_size_units(tmp_path, size, unit, expected_um):
    data = _stack()
    p = _ome(tmp_path / "f.ome.tif", data[0], "CYX", NAMES, size, unit)
    f = fc.read_field(p)
    _expect(f, data)
    assert f.pixel_size_um == pytest.approx(expected_um)
    assert f.pixel_size_source == "OME PhysicalSizeX"
    assert f.channel_names == tuple(NAMES) and f.channel_map == {"DAPI": 0, "EGR1": 1, "D5S23": 2}
    assert (f.axes, f.n_z, f.dtype, f.shape, f.stem, f.panel_id) == ("CYX", 1, "uint16", (3, NY, NX), "f", "del5q")
    assert f.saturation_value == 65535.0
    assert fio.describe_field(p)["channel_source"] == "OME Channel Name"


def test_ome_names_in_any_order_and_by_alias_and_fluor(tmp_path):
    data = _stack()
    # file order: green (D5S23 by alias), Hoechst (DAPI), SpectrumOrange (EGR1 by fluor)
    p = _ome(tmp_path / "f.ome.tif", data[0], "CYX", ["green", "hoechst 33342", "spectrumorange"])
    f = fc.read_field(p)
    _expect(f, data, order=(1, 2, 0))
    assert f.channel_map == {"DAPI": 1, "EGR1": 2, "D5S23": 0}
    assert f.pixel_size_um is None and f.pixel_size_source == "none"


def test_merge_channel_loses_to_exact_names(tmp_path):
    data = _stack(n_c=4)
    p = _ome(tmp_path / "m.ome.tif", data[0], "CYX", ["DAPI+EGR1 merge", "DAPI", "EGR1", "D5S23"])
    f = fc.read_field(p)
    _expect(f, data, order=(1, 2, 3))
    assert fio.describe_field(p)["unused_channels"] == [0]


def test_extra_unnamed_or_unknown_channels_are_ignored(tmp_path):
    data = _stack(n_c=4)
    p = _ome(tmp_path / "f.ome.tif", data[0], "CYX", ["Brightfield", "D5S23", "EGR1", "DAPI"])
    f = fc.read_field(p)
    _expect(f, data, order=(3, 2, 1))
    assert fio.describe_field(p)["unused_channels"] == [0]


@pytest.mark.parametrize("unit, pixel_in_unit", [("um", 0.065), ("micron", 0.065), ("\\u00B5m", 0.065), ("nm", 65.0)])
def test_imagej_hyperstack_labels_and_resolution(tmp_path, unit, pixel_in_unit):
    data = _stack(n_z=3)
    p = tmp_path / "ij.tif"
    tifffile.imwrite(p, data, imagej=True, resolution=(1 / pixel_in_unit, 1 / pixel_in_unit),
                     metadata={"axes": "ZCYX", "spacing": 0.3, "unit": unit, "Labels": ["D5S23", "DAPI", "EGR1"] * 3})
    f = fc.read_field(p)
    _expect(f, data, order=(1, 2, 0))
    assert f.pixel_size_um == pytest.approx(0.065, rel=1e-4) and f.pixel_size_source == "ImageJ"
    assert (f.axes, f.n_z) == ("ZCYX", 3)
    d = fio.describe_field(p)
    assert d["channel_source"] == "ImageJ Labels" and d["format"] == "ImageJ hyperstack"


def test_imagej_uncalibrated_has_no_pixel_size(tmp_path):
    data = _stack()
    p = tmp_path / "ij.tif"
    tifffile.imwrite(p, data[0], imagej=True, metadata={"axes": "CYX", "Labels": NAMES})
    f = fc.read_field(p)
    assert f.pixel_size_um is None and f.pixel_size_source == "none"


def test_plain_multipage_without_names_assumes_panel_order(tmp_path):
    data = _stack()
    p = _plain(tmp_path / "plain.tif", data[0])
    f = fc.read_field(p)
    _expect(f, data)
    assert f.axes == "CYX" and f.channel_names == ("", "", "")
    d = fio.describe_field(p)
    assert d["channel_source"] == "assumed panel order"
    assert "assumed panel order" in fio.format_description(d)


def test_plain_multipage_page_names(tmp_path):
    data = _stack()
    p = tmp_path / "pages.tif"
    with tifffile.TiffWriter(p) as w:
        for name, plane in zip(["EGR1", "DAPI", "D5S23"], data[0]):
            w.write(plane, metadata=None, photometric="minisblack", extratags=[(285, "s", 0, name, True)])
    f = fc.read_field(p)
    _expect(f, data, order=(1, 0, 2))
    assert fio.describe_field(p)["channel_source"] == "TIFF PageName"


def test_tiff_resolution_in_centimetres_and_ignored_screen_dpi(tmp_path):
    data = _stack()
    p = _plain(tmp_path / "cm.tif", data[0], resolution=(1e4 / 0.2, 1e4 / 0.2), resolutionunit="CENTIMETER")
    f = fc.read_field(p)
    assert f.pixel_size_um == pytest.approx(0.2) and f.pixel_size_source == "TIFF resolution"
    q = _plain(tmp_path / "dpi.tif", data[0], resolution=(72, 72), resolutionunit="INCH")
    assert fc.read_field(q).pixel_size_um is None
    # 300 dpi written in centimetres (118.11 px/cm) and CellProfiler's 1/100 px/cm are no calibration either
    for res in (118.11, 0.01):
        c = _plain(tmp_path / f"cm{res}.tif", data[0], resolution=(res, res), resolutionunit="CENTIMETER")
        assert fc.read_field(c).pixel_size_um is None


def test_yxc_small_last_axis(tmp_path):
    data = _stack()
    p = _plain(tmp_path / "yxc.tif", np.moveaxis(data[0], 0, -1), planarconfig="contig")
    f = fc.read_field(p)
    _expect(f, data)
    assert f.axes == "YXC" and f.shape == (NY, NX, 3)


def test_rgb_photograph_channels_named_by_colour(tmp_path):
    data = (_stack()[0] // 16).astype(np.uint8)  # channels 0,1,2 -> R,G,B
    p = tmp_path / "rgb.tif"
    tifffile.imwrite(p, np.moveaxis(data, 0, -1), photometric="rgb")
    # read by display colour only when the blue plane looks like a nuclear stain; this one is noise
    with pytest.raises(InputError, match="rgb.tif: colour composite .* blue plane does not look like the nuclear "
                                         "stain .* --channels EGR1,D5S23,DAPI"):
        fc.read_field(p)
    f = fc.read_field(p, channels=["EGR1", "D5S23", "DAPI"])
    _expect(f, data[None], order=(2, 0, 1))
    assert f.saturation_value == 255.0


@pytest.mark.parametrize("axes", ["ZCYX", "CZYX"])
def test_ome_z_stacks_max_plane_keep(tmp_path, axes):
    zcyx = _stack(n_z=4)
    stored = zcyx if axes == "ZCYX" else np.swapaxes(zcyx, 0, 1)
    p = _ome(tmp_path / "z.ome.tif", stored, axes, NAMES)
    f = fc.read_field(p)
    _expect(f, zcyx)
    assert (f.axes, f.n_z, f.shape) == (axes, 4, stored.shape)
    _expect(fc.read_field(p, z_mode="plane", z_plane=2), zcyx, z=2)
    k = fc.read_field(p, z_mode="keep")
    assert k.dapi.shape == (4, NY, NX)
    np.testing.assert_array_equal(k.probes["EGR1"], zcyx[:, 1].astype(np.float32))


@pytest.mark.parametrize("axes", ["ZCYX", "CZYX"])
def test_plain_4d_channel_axis_found_by_channel_count(tmp_path, axes):
    zcyx = _stack(n_z=5)
    stored = zcyx if axes == "ZCYX" else np.swapaxes(zcyx, 0, 1)
    p = tmp_path / "z.tif"
    tifffile.imwrite(p, stored, photometric="minisblack")  # tifffile "shaped" metadata: no axis names
    f = fc.read_field(p)
    assert f.axes == axes and f.n_z == 5
    _expect(f, zcyx)


def test_declared_axes_read_a_plain_tiff_the_shape_rule_cannot(tmp_path):
    """3 channels and 3 planes: the shape cannot tell them apart; axes= (--axes) says which is which."""
    zcyx = _stack(n_c=3, n_z=3)
    for axes, stored in (("ZCYX", zcyx), ("CZYX", np.swapaxes(zcyx, 0, 1))):
        p = tmp_path / f"{axes}.tif"
        tifffile.imwrite(p, stored, photometric="minisblack")  # shape in the description, no axis names
        with pytest.raises(InputError, match="declare them with --axes"):
            fc.read_field(p)
        f = fc.read_field(p, axes=axes.lower())
        assert (f.axes, f.n_z) == (axes, 3)
        _expect(f, zcyx)
        desc = fio.describe_field(p, axes=axes)
        assert desc["axes"] == axes and any("given by the user" in n for n in desc["notes"])


def test_declared_axes_split_the_pages_of_a_shapeless_multipage_tiff(tmp_path):
    """A multi-page TIFF written without any shape keeps only its 6 pages: declared ZCYX with --channels
    (3 names) they are 2 z-planes of 3 channels, channel fastest; declared CZYX, z fastest."""
    zcyx = _stack(n_c=3, n_z=2)
    p = _plain(tmp_path / "pages.tif", zcyx.reshape(6, NY, NX))
    with tifffile.TiffFile(p) as tif:
        assert tif.series[0].shape == (6, NY, NX)
    f = fc.read_field(p, axes="ZCYX", channels=NAMES)
    assert (f.axes, f.n_z, f.shape) == ("ZCYX", 2, (2, 3, NY, NX))
    _expect(f, zcyx)
    q = _plain(tmp_path / "pages_cz.tif", np.swapaxes(zcyx, 0, 1).reshape(6, NY, NX))
    _expect(fc.read_field(q, axes="CZYX"), zcyx)  # 3 channels: DAPI + the panel's two signals
    with pytest.raises(InputError, match="6 pages cannot be 4 channels"):
        fc.read_field(p, axes="ZCYX", channels=[*NAMES, "other"])


def test_declared_axes_override_what_the_file_says(tmp_path):
    """A plain 3-D stack is channels by default; declared as a z-stack of a per-channel file it is one;
    an ImageJ stack saved with its planes as channels is read as declared."""
    data = _stack(n_z=4)
    for name, c in (("DAPI", 0), ("EGR1", 1), ("D5S23", 2)):
        tifffile.imwrite(tmp_path / f"g_{name}.tif", data[:, c], imagej=True, metadata={"axes": "CYX"})
    group = [tmp_path / f"g_{n}.tif" for n in ("DAPI", "EGR1", "D5S23")]
    with pytest.raises(InputError, match="must hold one channel"):
        fc.read_field(group)
    f = fc.read_field(group, axes="ZYX")
    assert (f.axes, f.n_z) == ("CZYX", 4)
    _expect(f, data)


def test_declared_axes_on_arrays_are_refused():
    with pytest.raises(InputError, match="applies when reading a file"):
        fc.analyze_field(_stack()[0].astype(np.float32), axes="CYX")


@settings(max_examples=25, deadline=None)
@given(order=st.permutations("CZYX"), n_z=st.integers(1, 3), extra=st.sampled_from(["", "T", "Q"]))
def test_declared_axes_property_any_storage_order_reads_back(tmp_path_factory, order, n_z, extra):
    """Any storage order of C, Z, Y, X (plus a length-1 axis), declared with axes=, reads the same
    field as the (Z, C, Y, X) original."""
    zcyx = _stack(n_z=n_z, seed=n_z)
    src = "ZCYX"
    stored = np.transpose(zcyx, [src.index(a) for a in order])
    axes = "".join(order)
    if extra:
        stored, axes = stored[None], extra + axes
    p = tmp_path_factory.mktemp("ax") / "f.tif"
    tifffile.imwrite(p, stored, photometric="minisblack")
    f = fc.read_field(p, axes=axes)
    assert f.axes == axes and f.n_z == n_z
    _expect(f, zcyx)


def test_per_channel_files_grouped_and_read(tmp_path):
    data = _stack(n_z=2)
    for name, c in (("DAPI", 0), ("EGR1", 1), ("D5S23", 2)):
        tifffile.imwrite(tmp_path / f"field01_{name}.tif", data[:, c], metadata=None, photometric="minisblack")
    for name, c in (("hoechst", 0), ("orange", 1), ("green", 2)):
        tifffile.imwrite(tmp_path / f"field02-{name}.TIF", data[0, c], metadata=None)
    _ome(tmp_path / "field03.ome.tif", data[0], "CYX", NAMES)
    groups = fc.find_fields(tmp_path)
    assert [[p.name for p in g] for g in groups] == [
        ["field01_DAPI.tif", "field01_EGR1.tif", "field01_D5S23.tif"],
        ["field02-hoechst.TIF", "field02-orange.TIF", "field02-green.TIF"],
        ["field03.ome.tif"],
    ]
    f1 = fc.read_field(groups[0])
    _expect(f1, data)
    assert f1.stem == "field01" and f1.path.endswith("field01_DAPI.tif") and f1.n_z == 2
    assert f1.channel_names == ("DAPI", "EGR1", "D5S23") and f1.axes == "CZYX"
    f2 = fc.read_field(list(reversed(groups[1])))  # any file order: matched by name
    _expect(f2, data[:1])
    assert f2.stem == "field02" and f2.channel_map == {"DAPI": 2, "EGR1": 1, "D5S23": 0}
    assert fio.describe_field(groups[1])["channel_source"] == "file names"


def test_per_channel_rgb_pictures_use_their_brightest_component(tmp_path):
    data = (_stack()[0] // 16).astype(np.uint8)
    for name, c, colour in (("DAPI", 0, 2), ("EGR1", 1, 0), ("D5S23", 2, 1)):
        rgb = np.zeros((NY, NX, 3), np.uint8)
        rgb[..., colour] = data[c]  # the channel shown in its display colour
        tifffile.imwrite(tmp_path / f"f_{name}.tif", rgb, photometric="rgb")
    f = fc.read_field(fc.find_fields(tmp_path)[0])
    _expect(f, data[None])
    assert f.channel_names == ("DAPI", "EGR1", "D5S23")


def test_find_fields_on_files_is_deterministic_and_dedups(tmp_path):
    data = _stack()
    for name, c in (("D5S23", 2), ("EGR1", 1), ("DAPI", 0)):
        tifffile.imwrite(tmp_path / f"b_{name}.tif", data[0, c], metadata=None)
    (tmp_path / "notes.txt").write_text("x")
    tifffile.imwrite(tmp_path / ".hidden.tif", data[0, 0])
    tifffile.imwrite(tmp_path / "b_truth_labels.tif", data[0, 0])
    files = sorted((q for q in tmp_path.glob("b_*.tif") if "truth" not in q.name), reverse=True)
    g1 = fc.find_fields(files + [tmp_path])
    assert g1 == fc.find_fields([tmp_path]) and len(g1) == 1
    assert [p.name for p in g1[0]] == ["b_DAPI.tif", "b_EGR1.tif", "b_D5S23.tif"]
    assert fc.find_fields([tmp_path / "b_truth_labels.tif"]) == [[tmp_path / "b_truth_labels.tif"]]


def test_group_missing_a_channel_file_says_which(tmp_path):
    data = _stack()
    for name, c in (("DAPI", 0), ("EGR1", 1)):
        tifffile.imwrite(tmp_path / f"f_{name}.tif", data[0, c], metadata=None)
    groups = fc.find_fields(tmp_path)
    assert len(groups) == 1
    with pytest.raises(InputError, match=r"f_DAPI.tif: too few channels .* found DAPI, EGR1 in 'DAPI', 'EGR1'"):
        fc.read_field(groups[0])


def test_lone_channel_suffix_file_is_its_own_field(tmp_path):
    data = _stack()
    _ome(tmp_path / "scan_DAPI.ome.tif", data[0], "CYX", NAMES)
    assert fc.find_fields(tmp_path) == [[tmp_path / "scan_DAPI.ome.tif"]]
    assert fc.read_field(tmp_path / "scan_DAPI.ome.tif").stem == "scan_DAPI"


def test_per_channel_group_unnamed_files_use_given_channels(tmp_path):
    data = _stack()
    paths = []
    for i, c in enumerate((2, 0, 1)):
        paths.append(tmp_path / f"img{i}.tif")
        tifffile.imwrite(paths[-1], data[0, c], metadata=None)
    f = fc.read_field(paths, channels=["d5s23", "dapi", "egr1"])
    _expect(f, data)
    assert f.stem == "img"
    g = fc.read_field(paths)  # no names at all: list order is taken as panel order
    _expect(g, data, order=(2, 0, 1))
    assert fio.describe_field(paths)["channel_source"] == "assumed panel order"


def test_channels_override_wins_over_metadata(tmp_path):
    data = _stack()
    p = _ome(tmp_path / "wrong.ome.tif", data[0], "CYX", ["EGR1", "D5S23", "DAPI"], 0.1)
    f = fc.read_field(p, channels=["DAPI", "EGR1", "D5S23"], pixel_size_um=0.25)
    _expect(f, data)
    assert f.pixel_size_um == 0.25 and f.pixel_size_source == "user"
    assert fio.describe_field(p, channels=["DAPI", "EGR1", "D5S23"])["channel_source"] == "user (--channels)"


def test_generic_channel_names_count_as_unnamed(tmp_path):
    data = _stack()
    p = _ome(tmp_path / "g.ome.tif", data[0], "CYX", ["Channel:0:0", "Channel:0:1", "Channel:0:2"])
    _expect(fc.read_field(p), data)
    assert fio.describe_field(p)["channel_source"] == "assumed panel order"


def test_other_panel_single_signal(tmp_path):
    data = _stack(n_c=2)
    p = _ome(tmp_path / "c8.ome.tif", data[0], "CYX", ["DAPI", "CEP 8"])
    f = fc.read_field(p, panel="cep8")
    assert list(f.probes) == ["CEP8"] and f.panel_id == "cep8"
    np.testing.assert_array_equal(f.probes["CEP8"], data[0, 1].astype(np.float32))


def test_png_and_jpeg_pictures_are_read(tmp_path):
    """Exported pictures named explicitly: an RGB composite mapped with channels= (by display colour only
    when its blue plane looks like a nuclear stain; test_colour_composite_*), 8- and 16-bit grey
    per-channel PNGs grouped by name, a palette PNG, a JPEG (lossy: close values)."""
    from PIL import Image

    data = _stack()[0]  # (3, Y, X) uint16: DAPI, EGR1, D5S23
    u8 = (data // 16).astype(np.uint8)
    Image.fromarray(np.stack([u8[1], u8[2], u8[0]], -1)).save(tmp_path / "comp.png")  # EGR1 red, D5S23 green
    f = fc.read_field(tmp_path / "comp.png", channels=["EGR1", "D5S23", "DAPI"])
    _expect(f, u8[None], order=(0, 1, 2))
    assert (f.axes, f.dtype, f.stem, f.pixel_size_um, f.saturation_value) == ("YXC", "uint8", "comp", None, 255.0)
    d = fio.describe_field(tmp_path / "comp.png", channels=["EGR1", "D5S23", "DAPI"], pixel_size_um=0.1)
    assert d["format"] == "PNG" and d["pixel_size_um"] == 0.1 and any("no pixel size" in n for n in d["notes"])
    with pytest.raises(InputError, match="blue plane does not look like"):  # noise: no colour mapping
        fc.read_field(tmp_path / "comp.png")
    for name, c in (("DAPI", 0), ("EGR1", 1), ("D5S23", 2)):  # 16-bit grey, one file per channel
        Image.fromarray(data[c]).save(tmp_path / f"g_{name}.png")
    group = fc.find_fields([tmp_path / f"g_{n}.png" for n in ("D5S23", "DAPI", "EGR1")])
    assert [[p.name for p in g] for g in group] == [["g_DAPI.png", "g_EGR1.png", "g_D5S23.png"]]
    g = fc.read_field(group[0])
    _expect(g, data[None])
    assert g.dtype == "uint16" and g.stem == "g"
    np.testing.assert_array_equal(fio.read_one_channel(tmp_path / "g_DAPI.png"), data[0])
    Image.fromarray(u8[0]).convert("P").save(tmp_path / "pal.png")  # a palette picture of grey levels
    with Image.open(tmp_path / "pal.png") as im:
        assert im.mode == "P"
    np.testing.assert_array_equal(fio.read_one_channel(tmp_path / "pal.png"), u8[0])
    Image.fromarray(np.stack([u8[1], u8[2], u8[0]], -1)).save(tmp_path / "comp.jpg", quality=100, subsampling=0)
    j = fc.read_field(tmp_path / "comp.jpg", channels=["EGR1", "D5S23", "DAPI"])
    assert np.abs(j.dapi - u8[0]).mean() < 3 and any("lossy" in n for n in fio.describe_field(
        tmp_path / "comp.jpg", channels=["EGR1", "D5S23", "DAPI"])["notes"])
    (tmp_path / "sub").mkdir()
    Image.fromarray(u8[0]).save(tmp_path / "sub" / "overlay.png")
    with pytest.raises(InputError, match="folder holds no .tif/.tiff files"):  # folders: TIFFs only
        fc.find_fields(tmp_path / "sub")


def _multi_position(path, images, names=("DAPI", "EGR1", "D5S23"), pixel_sizes=None, thumbnail_first=False):
    """An OME-TIFF holding several (C, Y, X) images (a multi-position acquisition), optionally with a
    reduced-resolution thumbnail series first."""
    with tifffile.TiffWriter(path, ome=True) as tw:
        if thumbnail_first:
            tw.write(images[0][:, ::4, ::4], metadata={"axes": "CYX"})
        for k, im in enumerate(images):
            px = (pixel_sizes or [0.16] * len(images))[k]
            tw.write(im, metadata={"axes": "CYX", "Channel": {"Name": list(names)}, "PhysicalSizeX": px,
                                   "PhysicalSizeY": px})


def test_multi_position_file_is_refused_and_split(tmp_path):
    """A file of several same-shape images is never read as its first one alone (the others would be
    lost silently); split_series writes one OME-TIFF per image, each with its own metadata."""
    rng = np.random.default_rng(3)
    ims = [rng.integers(0, 4000, (3, 40, 48)).astype(np.uint16) for _ in range(3)]
    src = tmp_path / "positions.ome.tif"
    _multi_position(src, ims, pixel_sizes=[0.16, 0.1, 0.2], thumbnail_first=True)
    with pytest.raises(InputError, match=r"holds 3 images of shape \(3, 40, 48\) \(series 1, 2, 3: .*"
                                         r"read_field\(\.\.\., series=K\).*fishcount split-series "
                                         r"positions.ome.tif --out DIR"):
        fc.read_field(src)
    with pytest.raises(InputError, match="holds 3 images"):
        fio.describe_field(src)
    # each position read on its own, with its own metadata, named <stem>_s<k>
    assert fc.image_positions(src) == [1, 2, 3]
    for k, im, px in zip((1, 2, 3), ims, (0.16, 0.1, 0.2)):
        f = fc.read_field(src, series=k)
        assert f.stem == f"positions_s{k}" and f.series == k and f.pixel_size_um == pytest.approx(px)
        np.testing.assert_array_equal(f.dapi, im[0].astype(np.float32))
        np.testing.assert_array_equal(f.probes["EGR1"], im[1].astype(np.float32))
    assert fio.describe_field(src, series=3)["series"] == 3 and fio.describe_field(src, series=3)["stem"] == \
        "positions_s3"
    with pytest.raises(InputError, match=r"has no full-size image series 0 \(its full-size images are series "
                                         r"1, 2, 3\)"):
        fc.read_field(src, series=0)  # the thumbnail
    with pytest.raises(InputError, match=r"series=-1: a series number \(>= 0\)"):
        fc.read_field(src, series=-1)
    out = fio.split_series(src, tmp_path / "split")
    # named by the file's series number (series 0 is the thumbnail, left out); each image its own pixel size
    assert [p.name for p in out] == ["positions_s1.ome.tif", "positions_s2.ome.tif", "positions_s3.ome.tif"]
    for p, im, px in zip(out, ims, (0.16, 0.1, 0.2)):
        f = fc.read_field(p)
        assert f.channel_names == ("DAPI", "EGR1", "D5S23") and f.pixel_size_um == pytest.approx(px)
        np.testing.assert_array_equal(f.dapi, im[0].astype(np.float32))
        np.testing.assert_array_equal(f.probes["D5S23"], im[2].astype(np.float32))
    with pytest.raises(InputError, match="already exists"):  # nothing replaced silently
        fio.split_series(src, tmp_path / "split")
    assert len(fio.split_series(src, tmp_path / "split", overwrite=True)) == 3
    # one image with a thumbnail after it reads as before; a thumbnail before it is not taken for the field
    one = tmp_path / "one.ome.tif"
    with tifffile.TiffWriter(one, ome=True) as tw:
        tw.write(ims[0], metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "EGR1", "D5S23"]}})
        tw.write(ims[0][:, ::4, ::4], metadata={"axes": "CYX"})
    np.testing.assert_array_equal(fc.read_field(one).dapi, ims[0][0].astype(np.float32))
    assert fc.image_positions(one) == [] and fc.read_field(one).series is None
    # a thumbnail before the one full image: the full image is read, and the description says so
    late = tmp_path / "late.ome.tif"
    _multi_position(late, ims[:1], thumbnail_first=True)
    assert fc.image_positions(late) == []
    f = fc.read_field(late)
    np.testing.assert_array_equal(f.dapi, ims[0][0].astype(np.float32))
    assert f.stem == "late" and f.series is None and f.shape == (3, 40, 48)
    assert any("series 0 (shape (3, 10, 12)) is a smaller thumbnail" in n for n in fio.describe_field(late)["notes"])
    assert [p.name for p in fio.split_series(late, tmp_path / "s1")] == ["late_s1.ome.tif"]
    np.testing.assert_array_equal(fc.read_field(tmp_path / "s1" / "late_s1.ome.tif").dapi, ims[0][0].astype(np.float32))
    # errors name the file
    with pytest.raises(InputError, match="not found"):
        fio.split_series(tmp_path / "missing.tif", tmp_path / "x")
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "p.png")
    with pytest.raises(InputError, match="PNG picture holds one image"):
        fio.split_series(tmp_path / "p.png", tmp_path / "x")


def test_positions_of_other_sizes_are_positions_thumbnails_are_not(tmp_path):
    """Scenes of a slide may differ a little in size: each is a position; a thumbnail (at most half as wide
    and high) or an 8-bit RGB label picture beside them is not."""
    rng = np.random.default_rng(5)
    a = rng.integers(0, 4000, (3, 40, 48)).astype(np.uint16)
    b = rng.integers(0, 4000, (3, 36, 44)).astype(np.uint16)
    src = tmp_path / "scenes.ome.tif"
    with tifffile.TiffWriter(src, ome=True) as tw:
        tw.write(a[:, ::2, ::2], metadata={"axes": "CYX"})  # a half-size overview
        for im in (a, b):
            tw.write(im, metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "EGR1", "D5S23"]}})
        tw.write(rng.integers(0, 255, (30, 30, 3)).astype(np.uint8), photometric="rgb",
                 metadata={"axes": "YXS"})  # a label picture
    assert fc.image_positions(src) == [1, 2]
    with pytest.raises(InputError, match=r"holds 2 images of shape \(3, 36, 44\) / \(3, 40, 48\) \(series 1, 2"):
        fc.read_field(src)
    np.testing.assert_array_equal(fc.read_field(src, series=2).dapi, b[0].astype(np.float32))
    assert [p.name for p in fio.split_series(src, tmp_path / "o")] == ["scenes_s1.ome.tif", "scenes_s2.ome.tif"]


def _multi_file_ome(folder, images, names=("DAPI", "EGR1", "D5S23")):
    """A multi-file OME-TIFF dataset (as Micro-Manager writes one file per position): file k holds image k,
    and every file's OME-XML describes all images, each pointing at its file by UUID."""
    import uuid

    uuids = [f"urn:uuid:{uuid.uuid4()}" for _ in images]
    files = [f"pos{k}.ome.tif" for k in range(len(images))]
    c, y, x = images[0].shape
    chans = "".join(f'<Channel ID="Channel:{{k}}:{i}" Name="{n}" SamplesPerPixel="1"/>' for i, n in enumerate(names))
    body = "".join(
        f'<Image ID="Image:{k}"><Pixels ID="Pixels:{k}" DimensionOrder="XYCZT" Type="uint16" SizeX="{x}" '
        f'SizeY="{y}" SizeC="{c}" SizeZ="1" SizeT="1" PhysicalSizeX="0.16" PhysicalSizeY="0.16">'
        + chans.replace("{k}", str(k))
        + f'<TiffData FirstC="0" IFD="0" PlaneCount="{c}"><UUID FileName="{files[k]}">{uuids[k]}</UUID></TiffData>'
        '</Pixels></Image>' for k in range(len(images)))
    for k, im in enumerate(images):
        xml = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
               f'UUID="{uuids[k]}">{body}</OME>')
        with tifffile.TiffWriter(folder / files[k]) as tw:
            for ch in range(c):
                tw.write(im[ch], description=xml if ch == 0 else None, photometric="minisblack", metadata=None)
    return [folder / f for f in files]


def test_multi_file_ome_dataset_reads_each_file_as_its_own_image(tmp_path):
    """Every file of a multi-file OME-TIFF dataset describes all its images; each file is one field (its
    own image), never every position again; a file copied out alone still reads."""
    rng = np.random.default_rng(6)
    ims = [rng.integers(0, 4000, (3, 40, 48)).astype(np.uint16) for _ in range(3)]
    (tmp_path / "ds").mkdir()
    files = _multi_file_ome(tmp_path / "ds", ims)
    for f, im in zip(files, ims):
        assert fc.image_positions(f) == []
        field = fc.read_field(f)
        assert field.stem == f.name[:-8] and field.series is None and field.pixel_size_um == pytest.approx(0.16)
        np.testing.assert_array_equal(field.dapi, im[0].astype(np.float32))
        np.testing.assert_array_equal(field.probes["D5S23"], im[2].astype(np.float32))
    assert any("multi-file OME-TIFF dataset (3 images described)" in n for n in fio.describe_field(files[2])["notes"])
    alone = tmp_path / "alone"
    alone.mkdir()
    import shutil

    shutil.copy(files[1], alone / files[1].name)  # the other files missing: not a fault of this one
    np.testing.assert_array_equal(fc.read_field(alone / files[1].name).dapi, ims[1][0].astype(np.float32))
    # a run over the dataset: one field per file
    from fishcount.batch import infer_layout

    day = tmp_path / "study" / "P01" / "week00"
    day.mkdir(parents=True)
    for f in files:
        shutil.copy(f, day / f.name)
    table = infer_layout(tmp_path / "study")
    assert list(table["field"]) == [f"P01/week00/pos{k}" for k in range(3)] and list(table["series"]) == [None] * 3


def test_cli_split_series(tmp_path):
    from click.testing import CliRunner

    from fishcount.cli import main

    rng = np.random.default_rng(4)
    ims = [rng.integers(0, 4000, (3, 40, 48)).astype(np.uint16) for _ in range(2)]
    src = tmp_path / "pos.ome.tif"
    _multi_position(src, ims)
    r = CliRunner().invoke(main, ["info", str(src)])  # each position described as the field it is read as
    assert r.exit_code == 0 and "pos_s0\n" in r.output and "pos_s1\n" in r.output
    r = CliRunner().invoke(main, ["split-series", str(src), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [f"wrote {tmp_path / 'o' / f'pos_s{k}.ome.tif'}" for k in (0, 1)]
    r = CliRunner().invoke(main, ["info", str(tmp_path / "o")])
    assert r.exit_code == 0 and "pos_s0" in r.output and "pos_s1" in r.output
    r = CliRunner().invoke(main, ["split-series", str(src), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "already exists" in r.output
    # per-channel files of several positions: the channel stays last, so each position's files group again
    for c, name in enumerate(("DAPI", "EGR1", "D5S23")):
        with tifffile.TiffWriter(tmp_path / f"scan_{name}.ome.tif", ome=True) as tw:
            for im in ims:
                tw.write(im[c], metadata={"axes": "YX"})
        r = CliRunner().invoke(main, ["split-series", str(tmp_path / f"scan_{name}.ome.tif"), "--out",
                                      str(tmp_path / "pc")])
        assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "pc").iterdir()) == sorted(
        f"scan_s{k}_{n}.ome.tif" for k in (0, 1) for n in ("DAPI", "EGR1", "D5S23"))
    assert [[p.name for p in g] for g in fio.find_fields(tmp_path / "pc")] == [
        [f"scan_s{k}_{n}.ome.tif" for n in ("DAPI", "EGR1", "D5S23")] for k in (0, 1)]
    np.testing.assert_array_equal(fc.read_field(fio.find_fields(tmp_path / "pc")[1]).probes["D5S23"],
                                  ims[1][2].astype(np.float32))


def test_picture_too_large_to_decode_is_one_line_error(tmp_path, monkeypatch):
    from PIL import Image

    Image.fromarray(np.zeros((NY, NX), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses over 2x this (a decompression bomb)
    with pytest.raises(InputError, match="PNG too large to decode") as ei:
        fc.read_field(tmp_path / "big.png")
    assert str(ei.value).startswith(str(tmp_path / "big.png")) and "\n" not in str(ei.value)


def test_saturation_level_known_answers():
    lv = fio.saturation_level
    assert lv(np.uint16, 4095) == (4095.0, "camera bit depth (data maximum)")
    assert lv(np.uint16, 16383)[0] == 16383 and lv(np.uint16, 1023)[0] == 1023
    assert lv(np.uint16, 65520) == (65520.0, "camera bit depth (data maximum)")  # 12 bits shifted up
    assert lv(np.uint16, 4094) == (65535.0, "dtype") and lv(np.uint16, 65535) == (65535.0, "dtype")
    assert lv(np.uint16, None) == (65535.0, "dtype") and lv(np.uint16, 511) == (65535.0, "dtype")
    assert lv(np.uint16, 3000, significant_bits=12) == (4095.0, "OME SignificantBits")
    assert lv(np.uint16, 5000, significant_bits=12) == (65535.0, "dtype")  # the data say the metadata is wrong
    assert lv(np.uint16, 3000, significant_bits=16) == (65535.0, "dtype")
    assert lv(np.uint8, 255) == (255.0, "dtype") and lv(np.uint8, 127) == (255.0, "dtype")
    assert lv(np.float32, 4095.0) == (None, "none") and lv(np.bool_) == (1.0, "dtype")
    assert lv(np.int16, 4095)[0] == 4095 and lv(np.int16, 32767) == (32767.0, "dtype")


@settings(max_examples=200, deadline=None)
@given(dtype=st.sampled_from([np.uint8, np.uint16, np.int16, np.uint32]), frac=st.floats(0, 1),
       bits=st.one_of(st.none(), st.integers(1, 40)))
def test_saturation_level_property_never_below_the_data(dtype, frac, bits):
    """Whatever the metadata say, the saturation level is never below the field's largest value, and it
    is that value or the dtype's (or the stated bit depth's) full scale."""
    full = int(np.iinfo(dtype).max)
    top = int(frac * full)
    level, source = fio.saturation_level(dtype, top, bits)
    assert level >= top
    assert level in (full, top) or (source == "OME SignificantBits" and level == 2 ** bits - 1)


def test_camera_bit_depth_from_metadata_or_data(tmp_path):
    data = _stack()  # values 100..2599
    p = tmp_path / "sb.ome.tif"
    tifffile.imwrite(p, data[0], metadata={"axes": "CYX", "SignificantBits": 12, "Channel": {"Name": NAMES}})
    f = fc.read_field(p)
    assert (f.saturation_value, f.saturation_source) == (4095.0, "OME SignificantBits")
    clipped = data[0].copy()
    clipped[0, :3, :] = 4095  # DAPI clipped by a 12-bit camera, in a plain uint16 TIFF
    q = _plain(tmp_path / "clip.tif", clipped)
    d = fio.describe_field(q)
    assert (d["saturation_value"], d["saturation_source"]) == (4095.0, "camera bit depth (data maximum)")
    assert d["intensity"]["DAPI"]["saturated_pixels"] == 3 * NX
    assert "saturation:   4095 [camera bit depth (data maximum)]" in fio.format_description(d)
    plain = fio.describe_field(_plain(tmp_path / "plain.tif", data[0]))
    assert (plain["saturation_value"], plain["saturation_source"]) == (65535.0, "dtype")
    arr = fc.field_from_arrays(clipped[0], {"EGR1": clipped[1], "D5S23": clipped[2]})
    assert arr.saturation_value == 4095.0


def test_float_images_keep_values_and_have_no_saturation(tmp_path):
    data = _stack()[0].astype(np.float32) / 7
    p = _ome(tmp_path / "f.ome.tif", data, "CYX", NAMES)
    f = fc.read_field(p)
    np.testing.assert_array_equal(f.probes["D5S23"], data[2])
    assert f.saturation_value is None and f.dtype == "float32"


def test_describe_field_reports_everything(tmp_path):
    data = _stack(n_z=3)
    data[0, 1, 0, 0] = 65535
    p = _ome(tmp_path / "d.ome.tif", data, "ZCYX", NAMES, 0.1)
    d = fio.describe_field(p)
    assert d["shape"] == (3, 3, NY, NX) and d["dtype"] == "uint16" and d["axes"] == "ZCYX" and d["n_z"] == 3
    assert d["channel_map"]["EGR1"] == {"index": 1, "name": "EGR1"}
    assert d["pixel_size_um"] == pytest.approx(0.1) and d["pixel_size_source"] == "OME PhysicalSizeX"
    assert d["intensity"]["EGR1"]["max"] == 65535.0
    assert d["intensity"]["EGR1"]["saturated_fraction"] == pytest.approx(1 / (NY * NX))
    assert d["intensity"]["DAPI"]["min"] == float(data[:, 0].max(axis=0).min())
    text = fio.format_description(d)
    for piece in ("OME-TIFF", "ZCYX", "3 (max projection; z step not stored, give --z-step for 3-D)", "OME Channel Name", "0.1 µm", "EGR1"):
        assert piece in text


def test_field_from_arrays():
    rng = np.random.default_rng(1)
    dapi = rng.random((NY, NX))
    probes = {"D5S23": rng.random((NY, NX)), "EGR1": rng.random((NY, NX))}
    f = fc.field_from_arrays(dapi, probes, 0.1, name="sim01.tif")
    assert list(f.probes) == ["EGR1", "D5S23"] and f.dapi.dtype == np.float32
    np.testing.assert_allclose(f.probes["EGR1"], probes["EGR1"].astype(np.float32))
    assert (f.stem, f.pixel_size_source, f.panel_id, f.saturation_value) == ("sim01", "user", "del5q", None)
    g = fc.field_from_arrays(dapi, {"CEP8": probes["EGR1"]}, panel="cep8")
    assert g.pixel_size_um is None and g.channel_map == {"DAPI": 0, "CEP8": 1} and g.path == "<array>"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(probes={"EGR1": 1}), "missing D5S23"),
        (dict(probes={"EGR1": 1, "D5S23": 1, "FOO": 1}), "unknown FOO"),
        (dict(probes={"EGR1": 1, "D5S23": 2}), "shape"),
        (dict(dapi=np.ones(5)), "2-D"),
        (dict(nan=True), "NaN"),
        (dict(zero=True), "all pixels are 0"),
        (dict(pixel_size_um=-1), "positive"),
    ],
)
def test_field_from_arrays_errors(kwargs, match):
    ok = np.ones((8, 8))
    dapi = kwargs.get("dapi", ok.copy())
    shapes = {1: ok, 2: np.ones((8, 9))}
    probes = {k: shapes[v] for k, v in kwargs.get("probes", {"EGR1": 1, "D5S23": 1}).items()}
    if kwargs.get("nan"):
        dapi[0, 0] = np.nan
    if kwargs.get("zero"):
        dapi = np.zeros((8, 8))
    with pytest.raises(InputError, match=match) as ei:
        fc.field_from_arrays(dapi, probes, kwargs.get("pixel_size_um"), name="arr01")
    assert str(ei.value).startswith("arr01: ")


@pytest.mark.slow
def test_real_per_channel_files_with_channel_override():
    """CellProfiler ExampleSpeckles: Hoechst nuclei + gamma-H2AX foci, one file each (real images)."""
    d = DATA / "cellprofiler_speckles" / "images"
    files = [d / "1-162hrhoe2.tif", d / "1-162hrh2ax2.tif"]
    f = fc.read_field(files, panel="cep8", channels=["Hoechst", "CEP8"])
    assert f.dapi.shape == (1000, 1200) and f.dtype == "uint16" and f.channel_map == {"DAPI": 0, "CEP8": 1}
    raw = tifffile.imread(files[1])
    np.testing.assert_array_equal(f.probes["CEP8"], raw.astype(np.float32))
    assert f.stem == "1-162hrh"  # common prefix of the two stems
    # a 12-bit camera (the foci image reaches 4095 = 2**12 - 1 in two pixels): that is the saturation level
    assert (f.saturation_value, f.saturation_source) == (4095.0, "camera bit depth (data maximum)")


# -------------------------------------------------------------------------------------------
# bad input: one InputError naming the file
# -------------------------------------------------------------------------------------------
#: bad ``axes=`` declarations for a (3, 3, Y, X) plain TIFF: kind -> (axes, expected message part)
BAD_AXES = {
    "axes_length": ("CYX", "--axes CYX has 3 letter(s) but the image has 4 dimension(s)"),
    "axes_repeated": ("ccyx", "--axes CCYX names axis C more than once"),
    "axes_no_x": ("ZCYT", "has no X axis"),
    "axes_not_letters": ("Z,C,Y,X", "must be letters"),
    "axes_long_other": ("TCYX", "3 time points"),
}


def make_bad(kind: str, d: Path) -> tuple[object, dict, str]:
    """A bad input of ``kind`` in folder ``d``: (source, read_field kwargs, expected message part).

    Shared with tests/test_cli_info.py, which checks the CLI one-liner for each.
    """
    data = _stack()
    p = d / f"{kind}.tif"
    o = d / f"{kind}.ome.tif"
    if kind == "not_found":
        return d / "missing.tif", {}, "file not found"
    if kind == "not_tiff":
        p.write_bytes(b"GIF89a" + b"\0" * 64)
        return p, {}, "not a TIFF"
    if kind == "corrupt_png":
        q = d / "bad.png"
        q.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
        return q, {}, "truncated or corrupt PNG"
    if kind == "animated_png":
        from PIL import Image

        q = d / "anim.png"
        frames = [Image.fromarray(np.full((NY, NX), v, np.uint8)) for v in (10, 200)]
        frames[0].save(q, save_all=True, append_images=frames[1:])
        return q, {}, "an animated PNG (2 frames)"
    if kind == "corrupt_jpeg":
        from PIL import Image

        q = d / "bad.jpg"
        Image.fromarray(data[0, 0].astype(np.uint8)).save(q, quality=90)
        q.write_bytes(q.read_bytes()[:200])
        return q, {}, "truncated or corrupt JPEG"
    if kind == "empty_file":
        p.write_bytes(b"")
        return p, {}, "not a TIFF"
    if kind == "truncated":
        _ome(d / "whole.ome.tif", _stack(n_z=4), "ZCYX", NAMES)
        raw = (d / "whole.ome.tif").read_bytes()
        p.write_bytes(raw[: len(raw) // 2])
        return p, {}, "truncated"
    if kind == "truncated_plain":
        _plain(d / "whole.tif", data[0])
        raw = (d / "whole.tif").read_bytes()
        p.write_bytes(raw[: len(raw) - 100])
        return p, {}, "truncated"
    if kind == "truncated_data":
        _plain(d / "whole.tif", np.moveaxis(data[0], 0, -1), planarconfig="contig")
        raw = (d / "whole.tif").read_bytes()
        p.write_bytes(raw[:-100])
        return p, {}, "image data end at byte"
    if kind == "corrupt_compressed":
        _plain(d / "whole.tif", data[0], compression="zlib")
        raw = bytearray((d / "whole.tif").read_bytes())
        with tifffile.TiffFile(d / "whole.tif") as t:
            off = t.pages[1].dataoffsets[0]
        raw[off + 2: off + 60] = b"\x55" * 58
        p.write_bytes(bytes(raw))
        return p, {}, "truncated or corrupt"
    if kind == "corrupt":
        p.write_bytes(b"II*\x00" + b"\xff\xff\xff\x7f" + b"\x13" * 40)
        return p, {}, "truncated or corrupt TIFF (no readable image"
    if kind == "too_few_channels":
        _plain(p, data[0, :2])
        return p, {}, "too few channels"
    if kind == "one_channel":
        _plain(p, data[0, 0])
        return p, {}, "the image has 1, the panel needs 3 (DAPI + EGR1, D5S23); for one file per channel, give all"
    if kind == "missing_channel":
        _ome(o, data[0], "CYX", ["DAPI", "EGR1", "Cy5"])
        return o, {}, "no channel for D5S23"
    if kind == "ambiguous":
        _ome(o, data[0], "CYX", ["DAPI", "EGR1", "orange"])
        return o, {}, "'EGR1' and channel 2 'orange'"
    if kind == "ambiguous_name":
        _ome(o, data[0], "CYX", ["DAPI", "EGR1", "orange green"])
        return o, {}, "matches more than one"
    if kind == "unnamed_extra":
        _plain(p, _stack(n_c=4)[0])
        return p, {}, "no channel names"
    if kind == "channels_count":
        _ome(o, data[0], "CYX", NAMES)
        return o, {"channels": ["DAPI", "EGR1"]}, "gives 2 name(s)"
    if kind == "no_pixel_size":
        _ome(o, data[0], "CYX", NAMES)
        return o, {"require_pixel_size": True}, "no pixel size"
    if kind == "bad_pixel_size":
        _ome(o, data[0], "CYX", NAMES)
        return o, {"pixel_size_um": 0.0}, "positive"
    if kind in ("nan", "inf"):
        f = data[0].astype(np.float32)
        f[1, 3, 4] = np.nan if kind == "nan" else np.inf
        _ome(o, f, "CYX", NAMES)
        return o, {}, "NaN" if kind == "nan" else "1 infinite"
    if kind == "complex":
        _ome(o, (data[0] + 1j).astype(np.complex64), "CYX", NAMES)
        return o, {}, "not a real intensity"
    if kind == "all_zero":
        _ome(o, np.zeros_like(data[0]), "CYX", NAMES)
        return o, {}, "all pixels are 0"
    if kind == "zero_channel":
        z = data[0].copy()
        z[2] = 0
        _ome(o, z, "CYX", NAMES)
        return o, {}, "channel 2 'D5S23' (D5S23) is empty"
    if kind == "z_plane_range":
        _ome(o, _stack(n_z=3), "ZCYX", NAMES)
        return o, {"z_mode": "plane", "z_plane": 3}, "out of range"
    if kind == "ambiguous_4d":
        tifffile.imwrite(p, _stack(n_c=3, n_z=3), photometric="minisblack")
        return p, {}, "cannot tell which axis"
    if kind in BAD_AXES:  # a declaration (--axes) that does not fit a (3, 3, Y, X) plain TIFF
        tifffile.imwrite(p, _stack(n_c=3, n_z=3), photometric="minisblack")
        axes, message = BAD_AXES[kind]
        return p, {"axes": axes}, message
    if kind == "time_series":
        tifffile.imwrite(p, np.stack([data, data]), imagej=True, metadata={"axes": "TZCYX"})
        return p, {}, "2 time points"
    if kind == "too_large":
        import os

        avail = fio._available_memory_bytes() or 2**34
        side = int(np.sqrt(avail / 3)) + 1024  # 3 x side x side uint16: over 2x the available memory
        tifffile.imwrite(p, shape=(3, side, side), dtype=np.uint16, bigtiff=True, metadata=None,
                         photometric="minisblack")  # written sparse: nothing but headers on disk
        assert os.stat(p).st_blocks * 512 < 10**7
        return p, {}, "GB of memory"
    if kind == "group_size_mismatch":
        a, b, c = d / "g_DAPI.tif", d / "g_EGR1.tif", d / "g_D5S23.tif"
        tifffile.imwrite(a, data[0, 0])
        tifffile.imwrite(b, data[0, 1, :, :-2])
        tifffile.imwrite(c, data[0, 2])
        return [a, b, c], {}, "image size"
    if kind == "group_multichannel_member":
        a, b, c = d / "h_DAPI.tif", d / "h_EGR1.tif", d / "h_D5S23.tif"
        tifffile.imwrite(a, data[0, 0])
        tifffile.imwrite(b, data[0], metadata={"axes": "CYX"}, photometric="minisblack", imagej=True)
        tifffile.imwrite(c, data[0, 2])
        return [a, b, c], {}, "must hold one channel"
    raise AssertionError(kind)


BAD_KINDS = [
    "not_found", "not_tiff", "corrupt_png", "corrupt_jpeg", "animated_png", "empty_file", "truncated", "truncated_plain", "truncated_data", "corrupt_compressed",
    "corrupt", "too_few_channels", "one_channel",
    "missing_channel", "ambiguous", "ambiguous_name", "unnamed_extra", "channels_count", "no_pixel_size",
    "bad_pixel_size", "nan", "inf", "complex", "all_zero", "zero_channel", "z_plane_range", "ambiguous_4d", *BAD_AXES, "time_series",
    "too_large", "group_size_mismatch", "group_multichannel_member",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_raises_one_line_input_error_naming_the_file(tmp_path, kind):
    source, kwargs, match = make_bad(kind, tmp_path)
    with pytest.raises(InputError) as ei:
        fc.read_field(source, **kwargs)
    msg = str(ei.value)
    assert match in ei.value.reason, msg
    names = [Path(s).name for s in (source if isinstance(source, list) else [source])]
    assert any(n in msg for n in names), msg
    assert "\n" not in msg


def test_too_large_is_refused_before_reading(tmp_path, monkeypatch):
    data = _stack()
    p = _ome(tmp_path / "f.ome.tif", data[0], "CYX", NAMES)
    monkeypatch.setattr(fio, "_available_memory_bytes", lambda: 1000)
    read = []
    monkeypatch.setattr(fio, "_read_array", lambda *a: read.append(1))
    with pytest.raises(InputError, match=r"needs about 0\.0 GB of memory to read, only 0\.0 GB"):
        fc.read_field(p)
    assert not read


def test_available_memory_is_known_and_positive():
    avail = fio._available_memory_bytes()
    assert avail is not None and avail > 0


def test_find_fields_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        fc.find_fields([tmp_path / "nope.tif"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: folder holds no .tif"):
        fc.find_fields(tmp_path / "empty")
    with pytest.raises(InputError, match="is a folder"):
        fc.read_field(tmp_path / "empty")


def test_z_plane_argument_errors(tmp_path):
    p = _ome(tmp_path / "z.ome.tif", _stack(n_z=2), "ZCYX", NAMES)
    with pytest.raises(InputError, match="needs z_plane"):
        fc.read_field(p, z_mode="plane")
    with pytest.raises(InputError, match="only used with z_mode='plane'"):
        fc.read_field(p, z_plane=1)
    with pytest.raises(InputError, match="z_mode must be"):
        fc.read_field(p, z_mode="mean")


# -------------------------------------------------------------------------------------------
# channel-name matching: properties
# -------------------------------------------------------------------------------------------
TERMS = fio._channel_terms(DEL5Q)
PANEL_TERMS = [(k, t) for k, ts in TERMS.items() for t in ts if k != "DAPI" or t in ("DAPI", "Hoechst", "nuclei")]


def _recase(s: str, flips: list[bool]) -> str:
    return "".join(c.swapcase() if f else c for c, f in zip(s, flips + [False] * len(s)))


@settings(deadline=None)
@given(
    st.permutations(["DAPI", "EGR1", "D5S23"]),
    st.lists(st.booleans(), min_size=8, max_size=8),
    st.sampled_from(["", " ", "  "]),
)
def test_matching_ignores_case_and_outer_spaces(order, flips, pad):
    names = [pad + _recase(n, flips) + pad for n in order]
    cmap = fio._match_channels(names, DEL5Q, "f.tif")
    assert cmap == {k: order.index(k) for k in ("DAPI", "EGR1", "D5S23")}


@settings(deadline=None)
@given(st.data())
def test_any_panel_term_maps_to_its_key(data):
    """Choosing for each key any of its names (any case, any order) maps channels to keys."""
    chosen = {k: data.draw(st.sampled_from([t for kk, t in PANEL_TERMS if kk == k])) for k in TERMS}
    keys = data.draw(st.permutations(list(TERMS)))
    names = [data.draw(st.sampled_from([chosen[k], chosen[k].upper(), chosen[k].lower()])) for k in keys]
    assert fio._match_channels(names, DEL5Q, "f.tif") == {k: keys.index(k) for k in TERMS}


@settings(deadline=None)
@given(
    st.lists(st.text(max_size=12), min_size=3, max_size=3),
    st.permutations(["DAPI", "EGR1", "D5S23"]),
)
def test_channels_override_always_wins(meta_names, order):
    names, source, cmap = fio._assign_channels(meta_names, "OME Channel Name", 3, DEL5Q, order, "f.tif")
    assert source == "user (--channels)" and names == tuple(order)
    assert cmap == {k: order.index(k) for k in ("DAPI", "EGR1", "D5S23")}


@settings(deadline=None)
@given(st.permutations(["DAPI", "EGR1", "D5S23"]), st.integers(0, 2))
def test_two_channels_for_one_signal_is_always_an_error_naming_both(order, dup):
    names = list(order) + [order[dup].lower()]
    with pytest.raises(InputError) as ei:
        fio._match_channels(names, DEL5Q, "f.tif")
    assert repr(order[dup]) in str(ei.value) and repr(order[dup].lower()) in str(ei.value)


@settings(deadline=None)
@given(
    st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=10),
    st.sampled_from(PANEL_TERMS),
    st.sampled_from(["_", "-"]),
)
def test_channel_suffix_split(prefix, key_term, sep):
    key, term = key_term
    assert fio._split_channel_suffix(prefix + sep + term, DEL5Q) == (prefix, term)


@settings(max_examples=30, deadline=None)
@given(st.permutations(["DAPI", "EGR1", "D5S23"]), st.lists(st.booleans(), min_size=5, max_size=5))
def test_read_field_override_beats_file_names_on_disk(tmp_path_factory, order, flips):
    d = tmp_path_factory.mktemp("ovr")
    data = _stack()
    p = _ome(d / "f.ome.tif", data[0], "CYX", ["D5S23", "DAPI", "EGR1"])
    names = [_recase(n, flips) for n in order]
    f = fc.read_field(p, channels=names)
    _expect(f, data, order=tuple(order.index(k) for k in ("DAPI", "EGR1", "D5S23")))


@pytest.mark.parametrize("name", ["Channel:0:1", "C1", "ch 2", "0", "w1", "Ch-03", ""])
def test_generic_names_are_recognised(name):
    assert fio._is_generic(name)


@pytest.mark.parametrize("name", ["DAPI", "EGR1", "C1-DAPI", "green", "5p15.2"])
def test_informative_names_are_not_generic(name):
    assert not fio._is_generic(name)


@pytest.mark.parametrize(
    "name, term, level",
    [("EGR1", "egr1", 2), (" dapi ", "DAPI", 2), ("LSI EGR1 SpectrumOrange", "EGR1", 1),
     ("Hoechst 33342", "Hoechst", 1), ("EGR1x", "EGR1", 0), ("xEGR1", "EGR1", 0), ("C1-DAPI", "DAPI", 1),
     ("Far Red", "red", 0), ("far-red (Cy5)", "red", 0), ("Texas Red", "red", 1), ("Red (Cy3)", "red", 1)],
)
def test_match_level_whole_words(name, term, level):
    assert fio._match_level(name, term) == level


def test_override_name_matching_nothing_ignores_that_channel(tmp_path):
    data = _stack(n_c=4)
    p = _ome(tmp_path / "bf.ome.tif", data[0], "CYX", ["a", "b", "c", "d"])
    f = fc.read_field(p, channels=["DAPI", "BF", "EGR1", "D5S23"])
    _expect(f, data, order=(0, 2, 3))
    assert fio.describe_field(p, channels=["DAPI", "BF", "EGR1", "D5S23"])["unused_channels"] == [1]


def test_imagej_plain_stack_labels_name_the_channels(tmp_path):
    data = _stack()
    p = tmp_path / "ijstack.tif"
    tifffile.imwrite(p, data[0], imagej=True, metadata={"Labels": ["EGR1\nacquired 10:02", "DAPI", "D5S23"]})
    f = fc.read_field(p)
    _expect(f, data, order=(1, 0, 2))
    assert f.channel_names == ("EGR1", "DAPI", "D5S23")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=6), min_size=1,
             max_size=4, unique=True),
    st.data(),
)
def test_find_fields_groups_exactly_by_prefix(tmp_path_factory, prefixes, data):
    """Files <prefix>_<channel> of each prefix form one field (DAPI first, panel order), whatever the
    case of the channel name; find_fields only looks at names, so empty files do."""
    d = tmp_path_factory.mktemp("groups")
    expected = []
    for pre in prefixes:
        keys = data.draw(st.lists(st.sampled_from(["DAPI", "EGR1", "D5S23"]), min_size=2, max_size=3, unique=True))
        files = []
        for k in ("DAPI", "EGR1", "D5S23"):
            if k in keys:
                term = data.draw(st.sampled_from([t for kk, t in PANEL_TERMS if kk == k and " " not in t]))
                term = data.draw(st.sampled_from([term, term.upper(), term.lower()]))
                sep = data.draw(st.sampled_from(["_", "-"]))
                files.append(d / f"{pre}{sep}{term}.tif")
                files[-1].write_bytes(b"")
        expected.append(files)
    got = fc.find_fields(d)
    assert sorted(got) == sorted(expected)
    assert all(fio._group_stem(g, DEL5Q) == g[0].name.split("_")[0].split("-")[0] for g in got)


def test_parallel_reads_do_not_mix_up_corruption_reports(tmp_path):
    """tifffile logs problems globally; a good file read while a bad one is read must stay good."""
    from concurrent.futures import ThreadPoolExecutor

    good = _ome(tmp_path / "good.ome.tif", _stack(n_z=2), "ZCYX", NAMES)
    bad, _, _ = make_bad("truncated", tmp_path)

    def read(p):
        try:
            return fc.read_field(p).stem
        except InputError as exc:
            return "error: " + exc.reason

    with ThreadPoolExecutor(4) as ex:
        out = list(ex.map(read, [good, bad] * 10))
    assert out[0::2] == ["good"] * 10
    assert all(o.startswith("error: truncated") for o in out[1::2])


def test_ome_fluor_names_channels_with_generic_names(tmp_path):
    data = _stack()
    p = tmp_path / "fl.ome.tif"
    tifffile.imwrite(p, data[0], metadata={"axes": "CYX", "Channel": {
        "Name": ["Ch1", "Ch2", "Ch3"], "Fluor": ["FITC", "DAPI", "Cy3"]}})
    f = fc.read_field(p)
    _expect(f, data, order=(1, 2, 0))
    assert f.channel_names == ("FITC", "DAPI", "Cy3")
    assert fio.describe_field(p)["channel_source"] == "OME Channel Name/Fluor"


def test_unusable_ome_pixel_size_is_a_note_not_a_guess(tmp_path):
    data = _stack()
    p = tmp_path / "u.ome.tif"
    tifffile.imwrite(p, data[0], metadata={"axes": "CYX", "Channel": {"Name": NAMES},
                                            "PhysicalSizeX": 1.0, "PhysicalSizeXUnit": "pixel"})
    d = fio.describe_field(p)
    assert d["pixel_size_um"] is None and d["pixel_size_source"] == "none"
    assert d["notes"] == ["unusable OME PhysicalSizeX='1.0' 'pixel'"]
    assert "note:         unusable OME PhysicalSizeX" in fio.format_description(d)


@settings(deadline=None)
@given(
    st.permutations(["DAPI", "EGR1", "D5S23"]),
    st.lists(st.text(max_size=10).filter(lambda n: all(fio._match_level(n, t) == 0 for _, t in PANEL_TERMS)
                                          and all(fio._match_level(n, t) == 0 for t in fio.DAPI_NAMES)),
             max_size=3),
    st.randoms(use_true_random=False),
)
def test_extra_unmatched_channels_never_change_the_mapping(order, extra, rnd):
    names = list(order) + extra
    rnd.shuffle(names)
    cmap = fio._match_channels(names, DEL5Q, "f.tif")
    assert {k: names[i] for k, i in cmap.items()} == {"DAPI": "DAPI", "EGR1": "EGR1", "D5S23": "D5S23"}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_damaged_files_give_input_error_or_a_correct_field(tmp_path_factory, data):
    """Truncating a file anywhere or overwriting a few bytes: read_field either raises InputError or
    reads a field; it never fails with another exception."""
    d = tmp_path_factory.mktemp("fuzz")
    kind = data.draw(st.sampled_from(["ome", "plain", "imagej", "zlib"]))
    arr = _stack(n_z=2)
    src = d / "src.ome.tif"
    if kind == "ome":
        _ome(src, arr, "ZCYX", NAMES, 0.1)
    elif kind == "plain":
        tifffile.imwrite(src, arr[0], metadata=None, photometric="minisblack")
    elif kind == "imagej":
        tifffile.imwrite(src, arr, imagej=True, metadata={"axes": "ZCYX", "Labels": NAMES * 2})
    else:
        tifffile.imwrite(src, arr[0], metadata=None, photometric="minisblack", compression="zlib")
    raw = bytearray(src.read_bytes())
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    bad = d / "damaged.tif"
    bad.write_bytes(bytes(raw))
    try:
        f = fc.read_field(bad)
    except InputError as exc:
        assert "damaged.tif" in str(exc) and "\n" not in str(exc)
    else:
        assert f.dapi.shape == (NY, NX) and set(f.probes) == {"EGR1", "D5S23"}


@pytest.mark.parametrize("panel", ["del5q", "kmt2a"])
@pytest.mark.parametrize("order", [(0, 1, 2), (1, 2, 0), (2, 1, 0), (1, 0, 2)])
def test_unnamed_channels_find_the_nuclear_stain_by_content(tmp_path, panel, order):
    """A plain TIFF without channel names is read in the panel's order, DAPI first, unless the first channel
    is plainly a probe and another plainly the nuclear stain: then that one is DAPI, the signals keep the
    panel's order over the rest, and the description says so."""
    sim = fc.simulate_field(panel, shape=(320, 320), seed=4)
    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, sim.image[list(order)])
    f = fc.read_field(p, panel, pixel_size_um=sim.pixel_size_um)
    np.testing.assert_array_equal(f.dapi, sim.image[0].astype(np.float32))
    d = fio.describe_field(p, panel)
    if order[0] == 0:
        assert d["channel_source"] == "assumed panel order" and not d["notes"]
        assert [f.channel_map[k] for k in f.probes] == [1, 2]
    else:
        j = order.index(0)
        assert d["channel_source"] == f"assumed panel order, DAPI = channel {j} by content"
        assert any(n.startswith(f"no channel names: channel {j} holds the nuclear stain") for n in d["notes"])
        # the signals in the panel's order over the remaining channels (which is which cannot be seen)
        assert [f.channel_map[k] for k in f.probes] == [i for i in range(3) if i != j]


def test_nuclear_stain_by_content_keeps_the_order_when_unclear():
    """Two nucleus-like channels, or a first channel that is not plainly a probe: the panel order stands."""
    from fishcount.io import _nuclear_stain_by_content
    from fishcount.panels import load_panel

    pan = load_panel("del5q")
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:256, :256]
    blobs = np.clip(sum(((yy - cy) ** 2 + (xx - cx) ** 2 < 15 ** 2).astype(float)
                        for cy, cx in rng.uniform(20, 236, (12, 2))), 0, 1)  # ~12 nuclei, 10-15 % of the field
    nuc = 100 + 1000 * blobs + rng.normal(0, 5, (256, 256))
    spots = 100 + rng.normal(0, 5, (256, 256))
    for cy, cx in rng.integers(1, 255, (50, 2)):  # 3x3 signals, ~0.7 % of the field
        spots[cy - 1: cy + 2, cx - 1: cx + 2] += 2000
    order = {"DAPI": 0, "EGR1": 1, "D5S23": 2}
    kept, src, notes = _nuclear_stain_by_content(order, "assumed panel order", [spots, nuc, nuc.copy()], pan)
    assert (kept, src) == (order, "assumed panel order")  # two nucleus-like channels: which one is not clear
    assert len(notes) == 1 and "channel 0, taken as DAPI, does not look like a nuclear stain" in notes[0]
    assert _nuclear_stain_by_content(order, "assumed panel order", [nuc, spots, spots.copy()], pan) == \
        (order, "assumed panel order", [])  # DAPI first, as assumed: nothing to say
    # named channels are never moved
    assert _nuclear_stain_by_content(order, "OME Channel Name", [spots, spots, nuc], pan)[0] == order
    assert _nuclear_stain_by_content(order, "assumed panel order", [spots, spots, nuc], pan)[0]["DAPI"] == 2


def _composite(sim, orange: bool = False) -> np.ndarray:
    """A simulated del(5q) field as an 8-bit colour composite: DAPI blue, EGR1 red (or orange: red plus
    55 % of it in green, as #ff8c00 displays it), D5S23 green; each channel stretched to 0-255."""
    u8 = [np.clip((c - np.percentile(c, 1)) / (np.percentile(c, 99.5) - np.percentile(c, 1)) * 255, 0, 255)
          for c in sim.image.astype(float)]
    dapi, egr1, d5s23 = u8
    green = np.clip(d5s23 + (140 / 255) * egr1, 0, 255) if orange else d5s23
    return np.round(np.stack([egr1, green, dapi], -1)).astype(np.uint8)


@pytest.mark.parametrize("kind", ["tif", "png", "png_rgba"])
def test_colour_composite_read_by_display_colour(tmp_path, kind):
    """An 8-bit colour composite without --channels: DAPI blue, each probe the primary of its panel display
    colour (EGR1 #ff8c00 red, D5S23 #00e000 green), with a note; --channels still wins."""
    from PIL import Image

    sim = fc.simulate_field("del5q", shape=(256, 256), seed=3)
    rgb = _composite(sim)
    p = tmp_path / f"comp.{kind[:3]}"
    if kind == "tif":
        tifffile.imwrite(p, rgb, photometric="rgb")
    else:
        data = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], -1) if kind == "png_rgba" else rgb
        Image.fromarray(data).save(p)
    f = fc.read_field(p)
    assert f.channel_map == {"DAPI": 2, "EGR1": 0, "D5S23": 1} and f.colour_composite
    np.testing.assert_array_equal(f.dapi, rgb[..., 2].astype(np.float32))
    np.testing.assert_array_equal(f.probes["EGR1"], rgb[..., 0].astype(np.float32))
    d = fio.describe_field(p)
    assert d["channel_source"] == fio.RGB_BY_COLOUR
    assert any("DAPI = blue, EGR1 = red (#ff8c00), D5S23 = green (#00e000)" in n for n in d["notes"])
    g = fc.read_field(p, channels=["D5S23", "EGR1", "DAPI", "alpha"][: len(f.channel_names)])  # the user's win
    if kind == "png_rgba":  # three names for four planes: the message names the alpha plane
        with pytest.raises(InputError, match=r"has 4 channel\(s\) \(red, green, blue, alpha: name the alpha plane "
                                             r"too, e.g. D5S23,EGR1,DAPI,alpha\)"):
            fc.read_field(p, channels=["D5S23", "EGR1", "DAPI"])
    assert g.channel_map == {"DAPI": 2, "EGR1": 1, "D5S23": 0} and g.colour_composite
    right = fio.describe_field(p, channels=["D5S23", "EGR1", "DAPI", "alpha"][: len(f.channel_names)])
    assert not any("--channels names" in n for n in right["notes"])
    # the names always win, but a plane named DAPI that is plainly a probe's is pointed out
    wrong = fio.describe_field(p, channels=["DAPI", "EGR1", "D5S23", "alpha"][: len(f.channel_names)])
    assert wrong["channel_source"] == "user (--channels)" and wrong["channel_map"]["DAPI"]["index"] == 0
    assert any(re.fullmatch(r"--channels names channel 0 DAPI, but it does not look like a nuclear stain \(bright "
                            r"area \d\.\d% of the field\) and channel 2 does \(\d+\.\d%\); check --channels", n)
               for n in wrong["notes"]), wrong["notes"]
    # a 16-bit three-channel TIFF is never a colour composite
    q = tmp_path / "plain16.tif"
    tifffile.imwrite(q, np.moveaxis(sim.image, 0, 0))
    assert not fc.read_field(q).colour_composite


def test_colour_composite_orange_probe_unmixed_in_full(tmp_path):
    """A probe displayed orange puts 55 % of itself in the green plane: the measured crosstalk is unmixed
    in full in a composite (a filter's bleed-through is capped at 0.5), so the green probe's counts match
    those of the same composite drawn in pure red."""
    from PIL import Image

    sim = fc.simulate_field("del5q", shape=(512, 512), seed=5)
    counts = {}
    for orange in (False, True):
        p = tmp_path / f"c{int(orange)}.png"
        Image.fromarray(_composite(sim, orange)).save(p)
        res = fc.analyze_field(p, pixel_size_um=sim.pixel_size_um)
        if orange:
            assert res.params["crosstalk_unmixed"] and 0.5 < res.params["crosstalk"]["EGR1->D5S23"] < 0.65
        counts[orange] = res.nuclei.set_index("label")["count_D5S23"]
    same = (counts[True] == counts[False]).mean()
    assert same >= 0.9, same


def test_colour_composite_refused_when_colours_do_not_decide(tmp_path):
    """A panel whose display colours do not name a red and a green probe (aqua, gold), or whose DAPI plane is
    not blue: one line naming the file and the way out, never a guess."""
    import tomllib

    from fishcount.panels import load_panel as lp
    sim = fc.simulate_field("del5q", shape=(256, 256), seed=3)
    rgb = _composite(sim)
    p = tmp_path / "comp.tif"
    tifffile.imwrite(p, rgb, photometric="rgb")
    text = (Path(fc.__file__).parent / "panels" / "del5q.toml").read_text()
    user = tmp_path / "aqua.toml"
    user.write_text(text.replace('color = "#00e000"', 'color = "#00ffff"').replace('id = "del5q"', 'id = "aqua5q"')
                    .replace('"green", "FITC"', '"aqua"'))  # an aqua probe: neither green by colour nor by name
    assert tomllib.loads(user.read_text())["id"] == "aqua5q"
    with pytest.raises(InputError, match=r"comp.tif: colour composite: panel aqua5q's display colours \(EGR1 "
                                         r"#ff8c00, D5S23 #00ffff\) do not say .* --channels EGR1,D5S23,DAPI$"):
        fc.read_field(p, lp(user))
    assert fc.read_field(p, lp(user), channels=["EGR1", "D5S23", "DAPI"]).channel_map["DAPI"] == 2
    swapped = tmp_path / "dapi_red.tif"  # the nuclear stain in red: the blue plane is a probe
    tifffile.imwrite(swapped, rgb[..., ::-1].copy(), photometric="rgb")
    with pytest.raises(InputError, match="dapi_red.tif: colour composite .* blue plane does not look like"):
        fc.read_field(swapped)


@given(st.tuples(*[st.integers(0, 255)] * 3))
def test_property_dominant_primary(rgb):
    """A colour picks a plane exactly when its largest component is at least 1.5x each other one."""
    k = fio._dominant_primary("#%02x%02x%02x" % rgb)
    top = max(rgb)
    others = sorted(rgb)[:2]
    if top > 0 and top >= fio.COLOUR_DOMINANCE * others[1] and rgb.count(top) == 1:
        assert k == rgb.index(top)
    else:
        assert k is None


def test_per_channel_files_of_several_positions_are_fields_of_their_own(tmp_path):
    """A per-channel group whose files each hold the same two positions: each position is a field of its own
    (read_field(files, series=k), with_positions, image_positions, stem ``<field>_s<k>``); without a series the
    refusal names the file and the way; files that hold different positions are not expanded."""
    data = [_stack(n_c=3, seed=k)[0] for k in range(2)]  # position k: (3, Y, X), DAPI/EGR1/D5S23
    for c, name in enumerate(("DAPI", "EGR1", "D5S23")):
        with tifffile.TiffWriter(tmp_path / f"f_{name}.ome.tif", ome=True) as tw:
            for k in range(2):
                tw.write(data[k][c], metadata={"axes": "YX"})
    group = fc.find_fields(tmp_path)
    assert [[p.name for p in g] for g in group] == [["f_DAPI.ome.tif", "f_EGR1.ome.tif", "f_D5S23.ome.tif"]]
    assert fc.image_positions(group[0]) == [0, 1]
    pos = fc.with_positions(group)
    assert [(p.series, fio.stem_of(p)) for p in pos] == [(0, "f_s0"), (1, "f_s1")]
    for k, p in enumerate(pos):
        f = fc.read_field(p)
        _expect(f, data[k][None])
        assert (f.stem, f.series) == (f"f_s{k}", k)
    assert "(+2 channel files) (series 1)" in str(pos[1])
    with pytest.raises(InputError, match=r"f_DAPI.ome.tif: holds 2 images .* each position of a per-channel "
                                         r"group is a field of its own .* read_field\(files, series=K\)"):
        fc.read_field(group[0])
    with tifffile.TiffWriter(tmp_path / "f_D5S23.ome.tif", ome=True) as tw:  # one position only
        tw.write(data[0][2], metadata={"axes": "YX"})
    assert fc.image_positions(group[0]) == [] and fc.with_positions(group) == group


@pytest.mark.parametrize("panel", ["del5q", "bcr_abl1", "tp53"])
@pytest.mark.parametrize("names", [("Blue", "Red", "Green"), ("DAPI", "Cy3", "FITC"), ("DAPI", "TRITC", "green"),
                                   ("DAPI", "RFP", "GFP"), ("Hoechst", "Texas Red", "FITC")])
def test_filter_and_dye_channel_names_map_the_orange_and_green_probes(tmp_path, panel, names):
    """Microscope channels named by filter colour (Red, Green, Blue), by dye (Cy3 / TRITC / Texas Red for the
    orange probe, FITC for the green one) or by filter cube (RFP / GFP): every shipped two-colour panel maps
    them without --channels."""
    pan = load_panel(panel)
    data = _stack()[0]
    p = _ome(tmp_path / "f.ome.tif", data, "CYX", list(names))
    f = fc.read_field(p, panel)
    orange, green = pan.signal_names  # panel order: the orange probe first
    assert f.channel_map == {"DAPI": 0, orange: 1, green: 2}


def _lut(r, g, b):
    return np.stack([np.linspace(0, v, 256) for v in (r, g, b)]).astype(np.uint8)


@pytest.mark.parametrize("order,luts,expect,source", [
    ((1, 0, 2), [(255, 0, 0), (0, 0, 255), (0, 255, 0)], {"DAPI": 1, "EGR1": 0, "D5S23": 2}, "ImageJ LUT colours"),
    ((2, 1, 0), [(0, 255, 0), (255, 0, 0), (0, 0, 255)], {"DAPI": 2, "EGR1": 1, "D5S23": 0}, "ImageJ LUT colours"),
    ((0, 1, 2), [(255, 255, 255)] * 3, {"DAPI": 0, "EGR1": 1, "D5S23": 2}, "assumed panel order"),  # grey tables
    ((0, 1, 2), [(255, 0, 0), (0, 0, 255), (0, 255, 0)], {"DAPI": 0, "EGR1": 1, "D5S23": 2}, "assumed panel order"),
    # one table in another colour: the channel the others leave (DAPI shown grey; EGR1 shown magenta)
    ((0, 2, 1), [(255, 255, 255), (0, 255, 0), (255, 0, 0)], {"DAPI": 0, "EGR1": 2, "D5S23": 1}, "ImageJ LUT colours"),
    ((0, 2, 1), [(0, 0, 255), (0, 255, 0), (255, 0, 255)], {"DAPI": 0, "EGR1": 2, "D5S23": 1}, "ImageJ LUT colours"),
])
def test_imagej_display_colours_name_unlabelled_channels(tmp_path, order, luts, expect, source):
    """A Fiji composite without channel labels: channels shown in plain blue / red / green are DAPI and the
    orange / green probes; grey tables, or a blue table on a channel that is not a nuclear stain (last case:
    EGR1 shown blue), leave the channels unnamed (the panel's order, DAPI found by content)."""
    sim = fc.simulate_field("del5q", shape=(256, 256), seed=3)  # a sparse field: nuclei fill ~2 %
    p = tmp_path / "fiji.tif"
    tifffile.imwrite(p, sim.image[list(order)], imagej=True, metadata={"axes": "CYX", "LUTs": [_lut(*c) for c in luts]})
    f = fc.read_field(p)
    assert f.channel_map == expect
    np.testing.assert_array_equal(f.dapi, sim.image[0].astype(np.float32))
    d = fio.describe_field(p)
    assert d["channel_source"] == source
    if source == "ImageJ LUT colours":
        assert any("mapped by their ImageJ display colours" in n for n in d["notes"])
        if len(set(map(tuple, luts)) & {(255, 255, 255), (255, 0, 255)}):
            assert any("the one left)" in n for n in d["notes"])
    elif luts[0] == luts[1]:  # grey tables: said, not silently dropped
        assert any("ImageJ display colours (grey, grey, grey) do not say which channel is which" in n
                   for n in d["notes"])


def test_imagej_display_colours_leave_a_fourth_channel_unused(tmp_path):
    """Blue / red / green tables and a grey fourth channel (transmitted light): the three colours name the
    panel's channels, the fourth is not used, and the note says so."""
    sim = fc.simulate_field("del5q", shape=(256, 256), seed=3)
    bf = np.random.default_rng(0).integers(1000, 1050, sim.image[0].shape).astype(sim.image.dtype)
    p = tmp_path / "fiji4.tif"
    tifffile.imwrite(p, np.stack([sim.image[0], sim.image[2], sim.image[1], bf]), imagej=True,
                     metadata={"axes": "CYX", "LUTs": [_lut(0, 0, 255), _lut(0, 255, 0), _lut(255, 0, 0),
                                                       _lut(255, 255, 255)]})
    f = fc.read_field(p)
    assert f.channel_map == {"DAPI": 0, "EGR1": 2, "D5S23": 1}
    assert any("channel 3 (grey) not used" in n for n in fio.describe_field(p)["notes"])


def test_imagej_display_colours_that_do_not_hold_refuse_a_misfit_channel_count(tmp_path):
    """A blue table on a probe channel of a 3-channel file read with a 2-channel panel: the colours are
    ignored and, the channels not fitting the panel, the file is refused with the way out (one line)."""
    sim = fc.simulate_field("del5q", shape=(256, 256), seed=3)
    p = tmp_path / "fiji.tif"
    tifffile.imwrite(p, sim.image, imagej=True,
                     metadata={"axes": "CYX", "LUTs": [_lut(255, 0, 0), _lut(0, 0, 255), _lut(0, 255, 0)]})
    with pytest.raises(InputError, match=r"fiji.tif: ImageJ display colours ignored: the channel mapped to DAPI does not "
                                         r"look like a nuclear stain, and the image has 3 channels for the 2 of panel "
                                         r"cep8; give them in file order with --channels$"):
        fc.read_field(p, "cep8")


@pytest.mark.parametrize("name,kind", [("h.png", "PNG picture"), ("h.JPG", "JPEG picture"), ("h.tif", "TIFF file")])
def test_a_file_that_is_not_what_its_name_says_is_named_by_its_name(tmp_path, name, kind):
    (tmp_path / name).write_text("hello, not an image")
    with pytest.raises(InputError, match=rf"{re.escape(name)}: not a {kind} \(starts with b'hell'"):
        fc.read_field(tmp_path / name)
    (tmp_path / name).write_bytes(b"ab")
    with pytest.raises(InputError, match=rf"{re.escape(name)}: not a {kind} \(only 2 bytes\)$"):
        fc.read_field(tmp_path / name)


def test_plain_tiff_of_three_channels_by_three_planes_is_refused_not_guessed(tmp_path):
    """(3, 3, Y, X) in a plain TIFF: tifffile marks one 3-long axis as planar samples whichever holds the
    channels, so that says nothing; fishcount asks for --axes, and reads the declared order right."""
    z = fc.simulate_field("del5q", shape=(96, 96), seed=1, z_planes=3).image  # Z, C, Y, X
    p = tmp_path / "czyx.tif"
    tifffile.imwrite(p, np.ascontiguousarray(z.transpose(1, 0, 2, 3)))
    with pytest.raises(InputError, match=r"cannot tell which axis of shape \(3, 3, 96, 96\) holds channels"):
        fc.read_field(p)
    f = fc.read_field(p, axes="CZYX", z_mode="keep")
    np.testing.assert_array_equal(f.dapi, z[:, 0].astype(np.float32))


def test_z_step_read_from_ome_and_imagej(tmp_path):
    """The distance between z-planes as the file stores it (OME PhysicalSizeZ in any unit, ImageJ spacing in its
    calibration unit); None for one plane or when absent."""
    import fishcount as fc

    sim = fc.simulate_field("del5q", shape=(96, 96), seed=4, z_planes=3)
    ome = fc.write_simulated_field(sim, tmp_path / "z.ome.tif")["image"]
    assert fc.read_field(ome).z_step_um == pytest.approx(sim.z_step_um)
    ij = tmp_path / "z_ij.tif"
    tifffile.imwrite(ij, sim.image.astype(np.uint16), imagej=True, resolution=(1 / 0.16, 1 / 0.16),
                     metadata={"spacing": 0.3, "unit": "um", "axes": "ZCYX"})
    f = fc.read_field(ij, channels=["DAPI", "EGR1", "D5S23"])
    assert f.n_z == 3 and f.z_step_um == pytest.approx(0.3) and f.pixel_size_um == pytest.approx(0.16)
    flat = fc.write_simulated_field(fc.simulate_field("del5q", shape=(96, 96), seed=4), tmp_path / "f.ome.tif")
    assert fc.read_field(flat["image"]).z_step_um is None
    out = fc.describe_field(ome)
    assert out["z_step_um"] == pytest.approx(sim.z_step_um)
    from fishcount.io import format_description

    assert "3 (max projection; 0.4 µm apart, from the file)" in format_description(out)
