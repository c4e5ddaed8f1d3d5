"""Analyse widget: panel, channel mapping, key parameters (µm, SNR), per-channel threshold override
with a live preview of detected signals; runs :func:`fishcount.analyze_field` in a worker thread.

Everything computed here is a call into the library: :func:`fishcount.field_from_arrays`,
:func:`fishcount.analyze_field`, :func:`fishcount.write_field_result` and, for the preview,
:func:`fishcount.spots.detect_signals`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._layers import META, labels_layer, points_layers, scale_of, shift_translate, show_outlines


def _image_layers(viewer) -> list:
    from napari.layers import Image

    return [ly for ly in viewer.layers if isinstance(ly, Image) and ly.data.ndim == 2 and not ly.rgb]


class AnalyseWidget(QWidget):
    """Analyse the field shown in the viewer and add its nuclei and signals as layers.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    #: Emitted with the output folder after a result is written (the Review widget listens).
    analysed = Signal(object)

    def __init__(self, napari_viewer):
        super().__init__()
        import fishcount as fc

        self.viewer = napari_viewer
        self.result = None
        self.result_dir: Path | None = None
        self.error: str | None = None
        self._worker = None
        self._preview_workers: dict[str, Any] = {}

        self.panel_box = QComboBox()
        self.panel_box.addItems(fc.list_panels())
        self.panel_box.setCurrentText(fc.DEFAULT_PANEL)
        self.dapi_box = QComboBox()
        self.channel_form = QFormLayout()
        self.channel_boxes: dict[str, QComboBox] = {}
        self.pixel_size = QDoubleSpinBox(decimals=4, minimum=0.0, maximum=10.0, singleStep=0.01)
        self.pixel_size.setSuffix(" µm/px")
        self.pixel_size.setSpecialValueText("from image")
        self.backend_box = QComboBox()
        from fishcount.segment import available_backends

        self.backend_box.addItems(available_backends())
        self.backend_box.setCurrentText("classical")
        self.backend_box.setToolTip("Nucleus segmentation backend: classical (no model), or cellpose / stardist / "
                                    "an installed plug-in (each needs its own package and weights).")
        self.nucleus_diameter = QDoubleSpinBox(decimals=1, minimum=0.0, maximum=100.0, singleStep=0.5)
        self.nucleus_diameter.setSuffix(" µm")
        self.nucleus_diameter.setSpecialValueText("automatic")
        self.min_auto_snr = QDoubleSpinBox(decimals=2, minimum=0.01, maximum=1000.0, singleStep=0.5)
        self.min_auto_snr.setValue(4.5)
        self.min_auto_snr.setSuffix(" SNR")
        # the box is the user's once they change it; until then a settings file's value is used exactly (not the
        # box's rounding), also when the file was named but the box not yet refreshed
        self._snr_user_set = False
        self._snr_programmatic = False
        self.min_auto_snr.valueChanged.connect(self._snr_edited)
        self.channel_shift = QLineEdit()
        self.channel_shift.setPlaceholderText("none (e.g. BCR=0,0.3; from `fishcount channel-shift`)")
        self.channel_shift.setToolTip("Calibrated lateral shift of probe channels against DAPI, µm: SIGNAL=DY,DX, "
                                      "several separated by ';'. The channel is moved back before detection.")
        self.crosstalk = QLineEdit()
        self.crosstalk.setPlaceholderText("none (e.g. SpectrumOrange:SpectrumGreen=0.08; from `fishcount crosstalk`)")
        self.crosstalk.setToolTip("Calibrated crosstalk between probe channels: SRC:DST=K, the fraction of SRC's "
                                  "light seen through DST's filter, several separated by ';'. The channels are "
                                  "unmixed before detection (needed for break-apart panels and 3-D detection).")
        self.settings_file = QLineEdit()
        self.settings_file.setPlaceholderText("none (a laboratory settings .toml; `fishcount settings`)")
        self.settings_file.setToolTip("Detection, segmentation and QC values that replace the defaults "
                                      "(docs/settings.md). Its min_auto_snr is shown above when it sets one.")
        self.threshold_form = QFormLayout()
        self.threshold_checks: dict[str, QCheckBox] = {}
        self.threshold_spins: dict[str, QDoubleSpinBox] = {}
        self.live_preview = QCheckBox("live preview of detected signals")
        self.out_dir = QLineEdit()
        self.out_dir.setPlaceholderText("output folder (empty: results stay in memory)")
        self.overwrite = QCheckBox("overwrite")
        self.run_btn = QPushButton("Analyse field")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        ch = QGroupBox("Channels")
        chl = QFormLayout(ch)
        chl.addRow("DAPI", self.dapi_box)
        chl.addRow(self.channel_form)
        params = QGroupBox("Parameters")
        pl = QFormLayout(params)
        pl.addRow("panel", self.panel_box)
        pl.addRow("pixel size", self.pixel_size)
        pl.addRow("segmentation", self.backend_box)
        pl.addRow("nucleus diameter", self.nucleus_diameter)
        pl.addRow("lowest automatic threshold", self.min_auto_snr)
        pl.addRow("channel shift (µm)", self.channel_shift)
        pl.addRow("crosstalk", self.crosstalk)
        pl.addRow("settings file", self.settings_file)
        th = QGroupBox("Detection threshold override (SNR, noise units)")
        tl = QVBoxLayout(th)
        tl.addLayout(self.threshold_form)
        tl.addWidget(self.live_preview)
        out = QHBoxLayout()
        out.addWidget(self.out_dir)
        out.addWidget(self.overwrite)
        lay = QVBoxLayout(self)
        for w in (params, ch, th):
            lay.addWidget(w)
        lay.addLayout(out)
        lay.addWidget(self.run_btn)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)

        self.panel_box.currentTextChanged.connect(self._rebuild)
        self.run_btn.clicked.connect(self.run)
        self.settings_file.editingFinished.connect(self._settings_changed)
        self.live_preview.toggled.connect(lambda on: on and self.preview_all())
        self.viewer.layers.events.inserted.connect(self._refresh_choices)
        self.viewer.layers.events.removed.connect(self._refresh_choices)
        self._rebuild()

    # -- set-up --------------------------------------------------------------------------------
    @property
    def panel(self):
        import fishcount as fc

        return fc.load_panel(self.panel_box.currentText())

    def _rebuild(self, *_):
        panel = self.panel
        for form, boxes in ((self.channel_form, self.channel_boxes), (self.threshold_form, None)):
            while form.rowCount():
                form.removeRow(0)
        self.channel_boxes, self.threshold_checks, self.threshold_spins = {}, {}, {}
        for s in panel.signals:
            box = QComboBox()
            self.channel_boxes[s.name] = box
            self.channel_form.addRow(f"{s.name} ({s.locus}, {s.fluor})", box)
            chk = QCheckBox("manual")
            spin = QDoubleSpinBox(decimals=2, minimum=0.5, maximum=1000.0, singleStep=0.5)
            spin.setValue(6.0)
            spin.setEnabled(False)
            chk.toggled.connect(spin.setEnabled)
            chk.toggled.connect(lambda _on, n=s.name: self._maybe_preview(n))
            spin.valueChanged.connect(lambda _v, n=s.name: self._maybe_preview(n))
            self.threshold_checks[s.name], self.threshold_spins[s.name] = chk, spin
            row = QHBoxLayout()
            row.addWidget(chk)
            row.addWidget(spin)
            self.threshold_form.addRow(s.name, row)
        self._refresh_choices()

    def _refresh_choices(self, *_):
        names = [ly.name for ly in _image_layers(self.viewer)]
        panel = self.panel
        for key, box in [("DAPI", self.dapi_box)] + list(self.channel_boxes.items()):
            current = box.currentText()
            box.blockSignals(True)
            box.clear()
            box.addItems(names)
            guess = current if current in names else self._guess(key, names, panel)
            if guess:
                box.setCurrentText(guess)
            box.blockSignals(False)

    def _guess(self, key: str, names: list[str], panel) -> str | None:
        terms = [key.lower()]
        if key == "DAPI":
            terms += ["hoechst", "nuclei", "dna"]
        else:
            s = panel.signal(key)
            terms += [a.lower() for a in s.aliases] + [s.fluor.lower(), s.locus.lower()]
        for ly in _image_layers(self.viewer):
            meta = ly.metadata.get(META, {})
            if str(meta.get("channel", "")).lower() == key.lower():
                return ly.name
        for t in terms:
            for n in names:
                if n.lower() == t:
                    return n
        return None

    # -- inputs ----------------------------------------------------------------------------------
    def _layer(self, name: str):
        if not name or name not in self.viewer.layers:
            raise ValueError(f"choose an image layer for every channel (missing: {name or 'none'})")
        return self.viewer.layers[name]

    def pixel_size_um(self) -> float | None:
        """Pixel size in µm: the spin box, else the DAPI layer's fishcount metadata or scale."""
        if self.pixel_size.value() > 0:
            return float(self.pixel_size.value())
        ly = self._layer(self.dapi_box.currentText())
        px = ly.metadata.get(META, {}).get("pixel_size_um")
        if px:
            return float(px)
        sc = float(ly.scale[-1])
        return sc if sc != 1.0 else None

    def thresholds(self) -> dict[str, float]:
        """Manual thresholds (SNR units) of the channels whose override is ticked."""
        return {k: float(self.threshold_spins[k].value()) for k, c in self.threshold_checks.items() if c.isChecked()}

    def field(self):
        """A :class:`fishcount.io.Field` built from the mapped layers."""
        import fishcount as fc

        dapi = np.asarray(self._layer(self.dapi_box.currentText()).data)
        probes = {k: np.asarray(self._layer(b.currentText()).data) for k, b in self.channel_boxes.items()}
        meta = self._layer(self.dapi_box.currentText()).metadata.get(META, {})
        name = str(meta.get("stem") or self.dapi_box.currentText())
        return fc.field_from_arrays(dapi, probes, self.pixel_size_um(), name=name, panel=self.panel)

    def settings(self):
        """The laboratory settings file named in the widget (:func:`fishcount.load_settings`), or None."""
        import fishcount as fc

        path = self.settings_file.text().strip()
        return fc.load_settings(path) if path else None

    def _snr_edited(self, _value) -> None:
        if not self._snr_programmatic:
            self._snr_user_set = True

    def _show_snr(self, value: float) -> None:
        self._snr_programmatic = True
        try:
            self.min_auto_snr.setValue(float(value))
        finally:
            self._snr_programmatic = False
        self._snr_user_set = False

    def _settings_changed(self) -> None:
        """Show a settings file's lowest automatic threshold in its box (the default when the file sets none),
        or why the file is refused."""
        import fishcount as fc
        from fishcount.analyze import DETECTION_DEFAULTS

        try:
            st = self.settings()
        except fc.FishcountError as exc:
            self.status.setText(f"error: {exc}")
            return
        self._show_snr(st.detection.get("min_auto_snr", DETECTION_DEFAULTS["min_auto_snr"]) if st is not None
                       else DETECTION_DEFAULTS["min_auto_snr"])
        if st is not None:
            self.status.setText(f"settings: {st.n_values} value(s) from {st.path}")

    def params(self) -> dict:
        import fishcount as fc

        st = self.settings()
        backend = self.backend_box.currentText()
        p: dict = {}
        if st is not None:
            st.check_backend(backend)
            p = st.analyze_params()
        file_snr = st.detection.get("min_auto_snr") if st is not None else None
        # the file's exact value unless the user changed the box (which then wins, as --threshold would)
        p["min_auto_snr"] = float(file_snr) if file_snr is not None and not self._snr_user_set \
            else float(self.min_auto_snr.value())
        if backend and backend != "classical":
            from fishcount.segment import check_backend

            check_backend(backend)  # an uninstalled package: the reason, at once
            p["backend"] = backend
        if self.nucleus_diameter.value() > 0:
            p["nucleus_diameter_um"] = float(self.nucleus_diameter.value())
        shifts = fc.parse_channel_shifts(self.channel_shift.text())
        if shifts:
            p["channel_shifts_um"] = shifts
        crosstalk = fc.parse_crosstalk(self.crosstalk.text())
        if crosstalk:
            p["channel_crosstalk"] = crosstalk
        return p

    # -- running ---------------------------------------------------------------------------------
    def analyse(self):
        """Run the analysis now (blocking) and return ``(FieldResult, output folder or None)``."""
        import fishcount as fc

        field = self.field()
        result = fc.analyze_field(field, self.panel, thresholds=self.thresholds(), **self.params())
        folder = None
        if self.out_dir.text().strip():
            folder = fc.write_field_result(result, self.out_dir.text().strip(), overwrite=self.overwrite.isChecked())
        return result, folder

    def run(self, *_):
        """Run :meth:`analyse` in a worker thread; layers are added when it returns."""
        from napari.qt.threading import create_worker

        self.error = None
        self.run_btn.setEnabled(False)
        self.progress.setRange(0, 0)  # busy
        self.status.setText("analysing…")
        worker = create_worker(self.analyse, _ignore_errors=True)  # errors go to _failed
        worker.returned.connect(self._done)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()
        return worker

    def _finished(self):
        self.run_btn.setEnabled(True)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)

    def _failed(self, exc: Exception):
        self.error = str(exc)
        self.status.setText(f"error: {exc}")

    def _done(self, out):
        result, folder = out
        self.show_result(result, folder)

    def show_result(self, result, folder: Path | None = None) -> None:
        """Add the nuclei Labels layer (coloured by call, unscorable grey) and one Points layer per signal."""
        self.result, self.result_dir = result, (Path(folder) if folder else None)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        px = result.params.get("pixel_size_um") or result.field.pixel_size_um
        ctx = {"field_dir": str(folder) if folder else None, "panel": result.panel.id, "pixel_size_um": px}
        for data, kw, kind in [labels_layer(result.labels, result.panel, result.nuclei, px, ctx)] + points_layers(
            result.spots, result.panel, px, ctx
        ):
            if kw["name"] in self.viewer.layers:
                self.viewer.layers.remove(kw["name"])
            layer = getattr(self.viewer, f"add_{kind}")(data, **kw)
            if kind == "labels":
                show_outlines(layer)
        for name in [f"{s} preview" for s in result.panel.signal_names]:
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        self.align_probe_layers(result.params.get("channel_shifts_um") or {}, px)
        n = result.nuclei
        calls = n.loc[n["scorable"], "call"].value_counts()
        txt = ", ".join(f"{k} {v}" for k, v in calls.items())
        ths = ", ".join(f"{k} {v:.1f}" for k, v in result.thresholds.items())
        self.status.setText(
            f"{len(n)} nuclei, {int(n['scorable'].sum())} scorable ({txt}); thresholds (SNR) {ths}"
            + (f"; written to {folder}" if folder else "")
        )
        self.analysed.emit(folder)

    def align_probe_layers(self, shifts_um: dict, pixel_size_um: float | None) -> None:
        """Show each probe channel where the analysis saw it: its image layer is translated back by the
        calibrated channel shift (``{signal: (dy, dx)}`` µm, as recorded in ``params["channel_shifts_um"]``),
        so the signals, their markers and the nuclei outlines line up; no shift puts it back. The layer's
        data are not changed."""
        for sig, box in self.channel_boxes.items():
            name = box.currentText()
            if name not in self.viewer.layers:
                continue
            ly = self.viewer.layers[name]
            ly.translate = shift_translate(shifts_um.get(sig), pixel_size_um, ly.scale, ly.ndim)

    # -- live preview --------------------------------------------------------------------------
    def _maybe_preview(self, signal: str):
        if self.live_preview.isChecked():
            self.preview(signal)

    def preview_all(self):
        for s in self.channel_boxes:
            self.preview(s)

    def detect_preview(self, signal: str):
        """Detected signals of one channel with the current threshold (blocking); ``(table, threshold)``."""
        from fishcount.spots import detect_signals

        px = self.pixel_size_um()
        if px is None:
            raise ValueError("the preview needs a pixel size (set it, or open the image with its metadata)")
        img = np.asarray(self._layer(self.channel_boxes[signal].currentText()).data, dtype=np.float32)
        labels = self.result.labels if self.result is not None and self.result.labels.shape == img.shape else None
        th = self.thresholds().get(signal)
        return detect_signals(img, pixel_size_um=px, signal_diameter_um=self.panel.signal_diameter_um,
                              labels=labels, threshold=th, signal=signal)

    def preview(self, signal: str):
        """Show the detected signals of one channel as a ``<signal> preview`` Points layer (worker thread)."""
        from napari.qt.threading import create_worker

        old = self._preview_workers.get(signal)
        if old is not None:
            old.quit()
        w = create_worker(self.detect_preview, signal, _ignore_errors=True)
        w.returned.connect(lambda out, s=signal: self._show_preview(s, *out))
        w.errored.connect(self._failed)
        self._preview_workers[signal] = w
        w.start()
        return w

    def _show_preview(self, signal: str, table, threshold: float):
        from ._layers import signal_color

        name = f"{signal} preview"
        coords = table[["y", "x"]].to_numpy(dtype=float).reshape(-1, 2)
        if name in self.viewer.layers:
            self.viewer.layers[name].data = coords
        else:
            px = self.pixel_size_um()
            self.viewer.add_points(coords, name=name, scale=scale_of(px), symbol="ring", face_color="transparent",
                                   border_color=signal_color(self.panel, signal), size=6, border_width=0.2,
                                   border_width_is_relative=True)
        # detected on the channel as stored: drawn where its image layer is shown (align_probe_layers)
        src = self._layer(self.channel_boxes[signal].currentText()).translate
        self.viewer.layers[name].translate = np.asarray(src)[-2:]
        self.status.setText(f"{signal}: {len(table)} signals at threshold {threshold:.1f} SNR")
