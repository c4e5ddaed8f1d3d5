"""Review widget: step through every nucleus, confirm or correct it, never lose a correction.

The widget is a view over :mod:`fishcount.review`: every action builds a new
:class:`fishcount.review.ReviewState`; the edit is first appended to the reviewer's journal
(``review.<reviewer>.jsonl`` beside the field's results, atomic + fsynced) and only then shown.
Reopening the folder replays the journal. The tally is :func:`fishcount.review.tally` (the library's
``score_sample``); the gallery is :func:`fishcount.overlay.render_gallery`.

Keyboard (viewer): ``c`` confirm and go to the next unreviewed nucleus, ``n`` next, ``b`` back,
``u`` next unreviewed, ``x`` mark unscorable with the current reason.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._layers import META, label_colors, points_layers, scale_of, show_outlines

#: Reasons offered for marking a nucleus unscorable (clinical.md §3.2 / §6.1 R1: overlapping,
#: damaged, out of focus, clumped nuclei are not scored); the box is editable.
UNSCORABLE_REASONS = ("overlapping nuclei", "out of focus", "damaged nucleus", "clumped", "debris", "poor hybridisation")
CURRENT_LAYER = "current nucleus"


def _tables_signature(folder) -> tuple | None:
    """Size and modification time of a field folder's tables: they change when the field is analysed again."""
    try:
        return tuple((st.st_size, st.st_mtime_ns, st.st_ino) for st in
                     (os.stat(Path(folder) / n) for n in ("nuclei.csv", "spots.csv")))
    except OSError:
        return None


class ReviewWidget(QWidget):
    """Per-nucleus review of one field result folder (or of the fields of a ``fishcount run`` folder).

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.state = None
        self.folder: Path | None = None
        self.study: Path | None = None
        self.order: list[int] = []
        self.current: int | None = None
        self.context: dict = {}
        self.last_error: str | None = None
        self.gallery_image: np.ndarray | None = None
        self._syncing = False  # True while the widget itself rewrites layer data
        self._pending_remove: list[int] = []
        self._pending_moves: dict[int, tuple[float, float]] = {}
        self._move_timer = QTimer(self)
        self._move_timer.setSingleShot(True)
        self._move_timer.setInterval(300)  # a drag ends 300 ms after the last move event
        self._move_timer.timeout.connect(self.commit_pending_moves)
        self.opened_reviewer: str | None = None  # the name the open field's journal is written under

        self.reviewer = QLineEdit()
        self.reviewer.setPlaceholderText("your name (letters, digits, _.-)")
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("field result folder or fishcount run folder")
        self.open_btn = QPushButton("Open")
        self.field_box = QComboBox()
        self.field_box.setVisible(False)
        self.blind = QCheckBox("blind (calls hidden, order shuffled)")
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.seed.setValue(1)
        self.seed.setPrefix("seed ")

        self.first_btn = QPushButton("|<")
        self.prev_btn = QPushButton("<")
        self.confirm_btn = QPushButton("✓ Confirm")
        self.next_btn = QPushButton(">")
        self.next_unrev_btn = QPushButton(">> unreviewed")
        for b, tip in ((self.first_btn, "first nucleus"), (self.prev_btn, "previous (b)"),
                       (self.confirm_btn, "confirm and go to the next unreviewed (c)"), (self.next_btn, "next (n)"),
                       (self.next_unrev_btn, "next unreviewed (u)")):
            b.setToolTip(tip)
        self.info = QLabel("open a result folder")
        self.info.setWordWrap(True)

        self.call_box = QComboBox()
        self.set_call_btn = QPushButton("Set call")
        self.reason_box = QComboBox()
        self.reason_box.setEditable(True)
        self.reason_box.addItems(UNSCORABLE_REASONS)
        self.unscorable_btn = QPushButton("Unscorable")
        self.restore_btn = QPushButton("Restore")
        self.signal_box = QComboBox()
        self.add_btn = QPushButton("Add at cursor")
        self.delete_btn = QPushButton("Delete")
        self.delete_btn.setToolTip("delete the selected signal(s)")
        self.move_btn = QPushButton("Move to cursor")
        self.move_btn.setToolTip("move the selected signal to the cursor")

        self.tally_label = QLabel("")
        self.tally_label.setWordWrap(True)
        self.saved_label = QLabel("")
        self.saved_label.setWordWrap(True)
        self.gallery_btn = QPushButton("Gallery by call")
        self.save_btn = QPushButton("Save reviewed tables")
        self.recompute_btn = QPushButton("Recompute samples")
        self.compare_box = QComboBox()
        self.compare_btn = QPushButton("Compare readers")
        self.concordance_label = QLabel("")
        self.concordance_label.setWordWrap(True)
        self.gallery_label = QLabel()
        self.gallery_area = QScrollArea()
        self.gallery_area.setWidget(self.gallery_label)
        self.gallery_area.setWidgetResizable(True)
        self.gallery_area.setVisible(False)

        top = QFormLayout()
        top.addRow("reviewer", self.reviewer)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit)
        row.addWidget(self.open_btn)
        top.addRow("results", row)
        top.addRow("field", self.field_box)
        row = QHBoxLayout()
        row.addWidget(self.blind)
        row.addWidget(self.seed)
        top.addRow(row)
        nav = QHBoxLayout()
        for b in (self.first_btn, self.prev_btn, self.confirm_btn, self.next_btn, self.next_unrev_btn):
            nav.addWidget(b)
        edit = QGroupBox("Correct")
        el = QFormLayout(edit)
        row = QHBoxLayout()
        row.addWidget(self.call_box)
        row.addWidget(self.set_call_btn)
        el.addRow("call", row)
        row = QHBoxLayout()
        row.addWidget(self.reason_box)
        row.addWidget(self.unscorable_btn)
        row.addWidget(self.restore_btn)
        el.addRow("exclude", row)
        row = QHBoxLayout()
        row.addWidget(self.signal_box)
        row.addWidget(self.add_btn)
        row.addWidget(self.delete_btn)
        row.addWidget(self.move_btn)
        el.addRow("signal", row)
        out = QHBoxLayout()
        for w in (self.gallery_btn, self.save_btn, self.recompute_btn):
            out.addWidget(w)
        cmp_ = QHBoxLayout()
        cmp_.addWidget(self.compare_box)
        cmp_.addWidget(self.compare_btn)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(nav)
        lay.addWidget(self.info)
        lay.addWidget(edit)
        lay.addWidget(QLabel("<b>Tally</b>"))
        lay.addWidget(self.tally_label)
        lay.addWidget(self.saved_label)
        lay.addLayout(out)
        lay.addLayout(cmp_)
        lay.addWidget(self.concordance_label)
        lay.addWidget(self.gallery_area, 1)

        self.open_btn.clicked.connect(lambda: self.open(self.folder_edit.text().strip() or None))
        self.field_box.activated.connect(lambda _i: self._open_study_field(self.field_box.currentText()))
        self.blind.toggled.connect(lambda _on: self._reorder())
        self.seed.valueChanged.connect(lambda _v: self.blind.isChecked() and self._reorder())
        self.first_btn.clicked.connect(self.go_first)
        self.prev_btn.clicked.connect(self.go_previous)
        self.next_btn.clicked.connect(self.go_next)
        self.next_unrev_btn.clicked.connect(self.go_next_unreviewed)
        self.confirm_btn.clicked.connect(self.confirm)
        self.set_call_btn.clicked.connect(lambda: self.set_call(self.call_box.currentText()))
        self.unscorable_btn.clicked.connect(lambda: self.mark_unscorable(self.reason_box.currentText()))
        self.restore_btn.clicked.connect(self.restore)
        self.add_btn.clicked.connect(self.add_signal_at_cursor)
        self.delete_btn.clicked.connect(self.delete_selected)
        self.move_btn.clicked.connect(self.move_selected_to_cursor)
        self.gallery_btn.clicked.connect(self.show_gallery)
        self.save_btn.clicked.connect(self.save_tables)
        self.recompute_btn.clicked.connect(self.recompute_samples)
        self.compare_btn.clicked.connect(lambda: self.compare(self.compare_box.currentText()))
        self._keys = (("c", self.confirm), ("n", self.go_next), ("b", self.go_previous),
                      ("u", self.go_next_unreviewed),
                      ("x", lambda: self.mark_unscorable(self.reason_box.currentText())))
        for key, fn in self._keys:
            self.viewer.bind_key(key, lambda _v, f=fn: f(), overwrite=True)
        # napari's layer keymaps come first (Labels: b, x; Image: c), so the review keys are bound on every
        # layer too, or they would do something else whenever such a layer is selected
        for ly in self.viewer.layers:
            self._bind_review_keys(ly)
        self._set_enabled(False)
        self._guess_folder()
        # results opened or analysed later (reader, Analyse widget) fill in the folder to review
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.reviewer.textChanged.connect(self._on_reviewer_typed)

    def _bind_review_keys(self, layer) -> None:
        for key, fn in self._keys:
            layer.bind_key(key, lambda _ly, f=fn: f(), overwrite=True)

    def _on_layer_inserted(self, event) -> None:
        self._bind_review_keys(event.value)
        if self.state is None:
            self._guess_folder()

    def _on_reviewer_typed(self, text: str) -> None:
        if self.opened_reviewer is not None and text.strip() != self.opened_reviewer:
            self.saved_label.setText(f"reviewing as {self.opened_reviewer}; press Open to review as "
                                     f"{text.strip() or '(no name)'}")

    # -- opening -------------------------------------------------------------------------------
    def _guess_folder(self):
        for ly in self.viewer.layers:
            meta = ly.metadata.get(META, {})
            target = meta.get("study_dir") or meta.get("field_dir")
            if target:
                self.folder_edit.setText(str(target))
                return

    def _set_enabled(self, on: bool):
        for w in (self.first_btn, self.prev_btn, self.confirm_btn, self.next_btn, self.next_unrev_btn,
                  self.set_call_btn, self.unscorable_btn, self.restore_btn, self.add_btn, self.delete_btn,
                  self.move_btn, self.gallery_btn, self.save_btn, self.compare_btn):
            w.setEnabled(on)
        self.recompute_btn.setEnabled(on and self.study is not None)

    def _fail(self, exc: Exception, what: str = "not saved") -> None:
        """Show an error in the widget (never raised into the viewer); ``what`` says what did not happen."""
        self.last_error = str(exc)
        self.saved_label.setText(f"<span style='color:#ff6b6b'>{what}: {exc}</span>")

    def _typed_reviewer(self) -> str:
        from fishcount.review import _check_reviewer

        return _check_reviewer(self.reviewer.text())

    def _reviewer(self) -> str:
        """The reviewer whose journal the open field writes to: fixed when it was opened (typing another name
        takes effect with Open, never half-way through a field)."""
        return self.opened_reviewer if self.opened_reviewer is not None else self._typed_reviewer()

    def open(self, folder: "str | Path | None" = None) -> None:
        """Open a field result folder (or a run folder: its first field) for review by the named reviewer,
        replaying the reviewer's journal."""
        from ._reader import is_field_dir, study_fields

        self.last_error = None
        try:
            reviewer = self._typed_reviewer()
            if folder is None:
                self._guess_folder()
                folder = self.folder_edit.text().strip()
            p = Path(folder)
            if not is_field_dir(p):
                fields = study_fields(p)
                if not fields:
                    from fishcount.errors import InputError

                    raise InputError(p, "not a fishcount field result folder (nuclei.csv + spots.csv) or run folder")
                self.study = p
                keys = [f.relative_to(p / "fields").as_posix() for f in fields]
                self.field_box.blockSignals(True)
                self.field_box.clear()
                self.field_box.addItems(keys)
                self.field_box.blockSignals(False)
                self.field_box.setVisible(True)
                p = fields[0]
            elif self.study is None or not str(p).startswith(str(self.study)):
                self.study = None
                self.field_box.setVisible(False)
            self._load(p, reviewer)
        except Exception as exc:  # noqa: BLE001 - shown to the user, never a crash of the viewer
            self._fail(exc, "cannot open")

    def _open_study_field(self, key: str) -> None:
        if self.study is None or not key:
            return
        try:
            self._load(self.study / "fields" / key, self._reviewer())
        except Exception as exc:  # noqa: BLE001 - the field under review stays, and the box says so
            self._fail(exc, "cannot open")
            if self.folder is not None:
                self.field_box.blockSignals(True)
                self.field_box.setCurrentText(self.folder.relative_to(self.study / "fields").as_posix())
                self.field_box.blockSignals(False)

    def _load(self, folder: Path, reviewer: str) -> None:
        from fishcount import review as rv

        from ._reader import field_context, field_result_layers

        ctx = field_context(folder)
        state = rv.open_review(folder, reviewer, ctx["panel"], field=folder.name)  # refused: nothing changes
        if self._pending_moves:  # a drag of the field being left is journalled there, not in the next one
            self._move_timer.stop()
            self.commit_pending_moves()
        self.state, self.folder, self.context = state, folder, ctx
        self.tables_signature = _tables_signature(folder)  # an edit is refused once the field is re-analysed
        self.opened_reviewer = reviewer
        self.folder_edit.setText(str(self.study or folder))
        # (re)build the layers of this field in the reviewed state
        # results layers of a previous field go; image layers the user opened stay (when the field's
        # source image cannot be found, e.g. it was analysed from layers, they are the only picture)
        for ly in [ly for ly in self.viewer.layers
                   if ly.name == CURRENT_LAYER or (ly.metadata.get(META) or {}).get("field_dir")]:
            self.viewer.layers.remove(ly)
        for data, kw, kind in field_result_layers(folder, reviewer, study=str(self.study) if self.study else None,
                                                  blind=self.blind.isChecked()):
            if kind == "image" and kw["name"] in self.viewer.layers:  # the field's own image replaces it
                self.viewer.layers.remove(kw["name"])
            kw.setdefault("metadata", {}).setdefault(META, {})["reviewer"] = reviewer
            layer = getattr(self.viewer, f"add_{kind}")(data, **kw)
            if kind == "labels":
                show_outlines(layer)
        for sig in state.panel.signal_names:
            if f"{sig} signals" in self.viewer.layers:
                self.viewer.layers[f"{sig} signals"].events.data.connect(
                    lambda event, sig=sig: self._on_points_edited(sig, event))
        self.call_box.clear()
        self.call_box.addItems(list(state.panel.call_names))
        self.signal_box.clear()
        self.signal_box.addItems(list(state.panel.signal_names))
        self._refresh_compare()
        self._set_enabled(True)
        self._reorder()
        n_ed = len(state.edits)
        self.saved_label.setText(f"journal {rv.journal_path(folder, reviewer).name}: {n_ed} edits restored"
                                 if n_ed else f"new journal {rv.journal_path(folder, reviewer).name}")

    def _reorder(self) -> None:
        from fishcount import review as rv

        if self.state is None:
            return
        seed = int(self.seed.value()) if self.blind.isChecked() else None
        self.order = [int(v) for v in rv.review_order(self.state.labels, seed=seed)]
        self._refresh_layers()
        nxt = rv.next_unreviewed(self.state, self.order)
        self.go_to(nxt if nxt is not None else (self.order[0] if self.order else None))

    # -- navigation ----------------------------------------------------------------------------
    @property
    def pixel_size_um(self) -> float | None:
        return self.context.get("pixel_size_um")

    def go_to(self, label: int | None) -> None:
        """Make ``label`` the current nucleus: zoom to it and show its details."""
        self.current = None if label is None else int(label)
        self._show_current()
        if self.current is None or self.state is None:
            return
        row = self.state.nucleus(self.current)
        px = self.pixel_size_um or 1.0
        cy, cx = float(row["centroid_y"]) * px, float(row["centroid_x"]) * px
        area = float(row.get("area_um2", np.nan)) if "area_um2" in row else np.nan
        d = 2 * np.sqrt(area / np.pi) if np.isfinite(area) and area > 0 else 40 * px
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera  # napari >= 0.9
        camera.center = (cy, cx)
        camera.zoom = 450.0 / (3.0 * d)
        r = 0.75 * d
        if CURRENT_LAYER in self.viewer.layers:
            self.viewer.layers[CURRENT_LAYER].data = np.array([[cy / px, cx / px]])
            self.viewer.layers[CURRENT_LAYER].size = 2 * r / px
        else:
            self.viewer.add_points(np.array([[cy / px, cx / px]]), name=CURRENT_LAYER, scale=scale_of(px), size=2 * r / px,
                                   symbol="square", face_color="transparent", border_color="white",
                                   border_width=0.03, border_width_is_relative=True)

    def _step(self, k: int) -> None:
        if not self.order:
            return
        i = self.order.index(self.current) if self.current in self.order else -1
        self.go_to(self.order[max(0, min(len(self.order) - 1, i + k))])

    def go_first(self) -> None:
        self.go_to(self.order[0] if self.order else None)

    def go_next(self) -> None:
        self._step(+1)

    def go_previous(self) -> None:
        self._step(-1)

    def go_next_unreviewed(self) -> None:
        from fishcount import review as rv

        if self.state is not None:
            nxt = rv.next_unreviewed(self.state, self.order, self.current)
            if nxt is not None:
                self.go_to(nxt)
            else:
                self.info.setText(self.info.text() + "<br><b>every nucleus is reviewed</b>")

    # -- edits: journal first, then show ----------------------------------------------------------
    def _commit(self, new_state) -> bool:
        from fishcount import review as rv

        try:
            now = _tables_signature(self.folder)  # None: the folder is gone (append_journal says so)
            if now is not None and now != getattr(self, "tables_signature", None):
                raise ValueError(f"{self.folder}: the field was analysed again since it was opened; reopen it "
                                 "(the journal must fit the tables on disk)")
            rv.append_journal(rv.journal_path(self.folder, self._reviewer()), new_state.edits[-1])
        except Exception as exc:  # noqa: BLE001 - the edit is dropped and the reviewer told
            self._fail(exc)
            return False
        self.state = new_state
        e = new_state.edits[-1]
        self.saved_label.setText(f"saved ✓ edit {e.seq} ({e.action}, nucleus {e.label}) "
                                 f"in {rv.journal_path(self.folder, e.reviewer).name}")
        self.last_error = None
        self._refresh_layers()
        self._show_current()
        return True

    def _do(self, fn, *args) -> bool:
        if self.state is None:
            return False
        try:
            new = fn(self.state, *args)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, "not done")
            return False
        return self._commit(new)

    def _need_current(self) -> bool:
        """Whether there is a current nucleus to edit; else says why (a field without nuclei)."""
        if self.state is not None and self.current is None:
            self._fail(ValueError("no nucleus in this field" if not self.order else "no nucleus selected"), "not done")
            return False
        return self.state is not None

    def confirm(self) -> bool:
        """Confirm the current nucleus as it is and go to the next unreviewed one."""
        from fishcount import review as rv

        if not self._need_current():
            return False
        ok = self._do(lambda s: rv.confirm(s, self.current, self._reviewer()))
        if ok:
            self.go_next_unreviewed()
        return ok

    def set_call(self, call: str) -> bool:
        from fishcount import review as rv

        if not self._need_current():
            return False
        return self._do(lambda s: rv.set_call(s, self.current, call, self._reviewer()))

    def mark_unscorable(self, reason: str) -> bool:
        from fishcount import review as rv

        if not self._need_current():
            return False
        return self._do(lambda s: rv.mark_unscorable(s, self.current, reason, self._reviewer()))

    def restore(self) -> bool:
        from fishcount import review as rv

        if not self._need_current():
            return False
        return self._do(lambda s: rv.restore_scorable(s, self.current, self._reviewer()))

    def add_signal(self, signal: str, y: float, x: float) -> bool:
        """Add a ``signal`` at pixel ``(y, x)`` to the current nucleus."""
        from fishcount import review as rv

        if not self._need_current():
            return False
        if "nuclei" in self.viewer.layers and self.label_at(y, x) != self.current:  # never counted in another one
            self._fail(ValueError(f"({y:.0f}, {x:.0f}) is not inside nucleus {self.current}: put the cursor on it"),
                       "not done")
            return False
        return self._do(lambda s: rv.add_signal(s, self.current, signal, float(y), float(x), self._reviewer()))

    def delete_signal(self, spot_id: int) -> bool:
        from fishcount import review as rv

        return self._do(lambda s: rv.delete_signal(s, int(spot_id), self._reviewer()))

    def move_signal(self, spot_id: int, y: float, x: float) -> bool:
        """Move a signal within its nucleus (to another nucleus: delete it and add it there)."""
        from fishcount import review as rv

        if self.state is not None and "nuclei" in self.viewer.layers:
            row = self.state.spots[self.state.spots["spot_id"] == int(spot_id)]
            if len(row) and self.label_at(y, x) != int(row["label"].iloc[0]):
                self._fail(ValueError("a signal can only move within its nucleus (delete it and add it in the other)"),
                           "not done")
                return False
        return self._do(lambda s: rv.move_signal(s, int(spot_id), float(y), float(x), self._reviewer()))

    def _cursor_px(self) -> tuple[float, float]:
        px = self.pixel_size_um or 1.0
        pos = self.viewer.cursor.position
        return float(pos[-2]) / px, float(pos[-1]) / px

    def add_signal_at_cursor(self) -> bool:
        y, x = self._cursor_px()
        return self.add_signal(self.signal_box.currentText(), y, x)

    def selected_spot_ids(self) -> list[int]:
        """``spot_id`` of the points selected in the signal layers."""
        ids = []
        for s in (self.state.panel.signal_names if self.state else ()):
            name = f"{s} signals"
            if name in self.viewer.layers:
                ly = self.viewer.layers[name]
                feats = ly.features
                ids += [int(feats["spot_id"].iloc[i]) for i in sorted(ly.selected_data)]
        return ids

    def delete_selected(self) -> bool:
        ids = self.selected_spot_ids()
        ok = bool(ids)
        for sid in ids:
            ok = self.delete_signal(sid) and ok
        return ok

    def move_selected_to_cursor(self) -> bool:
        ids = self.selected_spot_ids()
        if len(ids) != 1:
            self._fail(ValueError("select exactly one signal to move"), "not done")
            return False
        y, x = self._cursor_px()
        return self.move_signal(ids[0], y, x)

    # -- edits made directly on the Points layers ----------------------------------------------
    def label_at(self, y: float, x: float) -> int:
        """Nucleus label under pixel ``(y, x)`` of the ``nuclei`` layer (0 = background)."""
        if "nuclei" not in self.viewer.layers:
            return 0
        lab = self.viewer.layers["nuclei"].data
        iy, ix = int(round(y)), int(round(x))
        if 0 <= iy < lab.shape[0] and 0 <= ix < lab.shape[1]:
            return int(lab[iy, ix])
        return 0

    def _on_points_edited(self, signal: str, event) -> None:
        """Turn napari's own point tools (add, delete, drag) into journalled edits."""
        from fishcount import review as rv

        if self._syncing or self.state is None:
            return
        layer = self.viewer.layers[f"{signal} signals"]
        action = str(getattr(event, "action", ""))  # napari's ActionType is a string enum
        if action == "added":
            ok = True
            for i in event.data_indices:
                y, x = (float(v) for v in layer.data[i][-2:])
                label = self.label_at(y, x)
                if label == 0:
                    self._fail(ValueError("a signal must be placed inside a nucleus"), "not done")
                    ok = False
                    continue
                ok = self._do(lambda s, lab=label, y=y, x=x: rv.add_signal(s, lab, signal, y, x, self._reviewer())) and ok
            if not ok:  # drop the points that were not recorded, once napari has finished adding
                QTimer.singleShot(0, self._refresh_layers)
        elif action == "removing":
            feats = layer.features
            self._pending_remove = [int(feats["spot_id"].iloc[i]) for i in event.data_indices if i < len(feats)]
        elif action == "removed":
            ids, self._pending_remove = self._pending_remove, []
            ok = all([self.delete_signal(sid) for sid in ids])
            if not ok:
                QTimer.singleShot(0, self._refresh_layers)
        elif action == "changed":
            spots = self.state.spots.set_index("spot_id")
            feats = layer.features
            for i in event.data_indices:
                if i >= len(feats):
                    continue
                sid = int(feats["spot_id"].iloc[i])
                y, x = (float(v) for v in layer.data[i][-2:])
                if sid in spots.index and (abs(spots.at[sid, "y"] - y) > 1e-6 or abs(spots.at[sid, "x"] - x) > 1e-6):
                    self._pending_moves[sid] = (y, x)
            if self._pending_moves:
                self._move_timer.start()

    def commit_pending_moves(self) -> bool:
        """Journal the signals dragged on the canvas (called 300 ms after the last move event)."""
        moves, self._pending_moves = self._pending_moves, {}
        ok = True
        for sid, (y, x) in moves.items():
            ok = self.move_signal(sid, y, x) and ok
        if not ok:
            self._refresh_layers()
        return ok

    # -- display -------------------------------------------------------------------------------
    def _refresh_layers(self) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        if self.state is None:
            return
        blind = self.blind.isChecked()
        if "nuclei" in self.viewer.layers:
            self.viewer.layers["nuclei"].colormap = DirectLabelColormap(
                color_dict=label_colors(self.state.panel, self.state.nuclei, blind))
        self._syncing = True
        try:
            for data, kw, _ in points_layers(self.state.spots, self.state.panel, self.pixel_size_um):
                if kw["name"] in self.viewer.layers:
                    ly = self.viewer.layers[kw["name"]]
                    ly.selected_data = set()
                    ly.data = data
                    ly.features = kw["features"]
        finally:
            self._syncing = False
        self._show_tally()

    def _show_current(self) -> None:
        from fishcount import review as rv

        if self.state is None or self.current is None:
            self.info.setText("no nucleus")
            return
        r = self.state.nucleus(self.current)
        pos = self.order.index(self.current) + 1 if self.current in self.order else 0
        counts = ", ".join(f"{k} {int(r[f'count_{k}'])}" for k in self.state.panel.pattern_keys)
        status = "reviewed" if bool(r["reviewed"]) else "not reviewed"
        lines = [f"<b>nucleus {self.current}</b> ({pos}/{len(self.order)}) · {status}", f"signals: {counts}"]
        if not self.blind.isChecked():
            lines.append(f"pattern {r['pattern']} · call <b>{r['call']}</b> (automated: {r['call_auto']})")
        if not bool(r["scorable"]):
            reason = str(r["exclusion_reason"])
            if not self.blind.isChecked():
                lines.append(f"unscorable: {reason}")
            elif reason.startswith(rv.REVIEWER_REASON_PREFIX):  # blind: the reader's own exclusion, not the automated
                lines.append(f"unscorable ({reason})")
        self.info.setText("<br>".join(lines))
        if not self.blind.isChecked():
            self.call_box.setCurrentText(str(r["call"]))

    def tally_text(self) -> str:
        from fishcount import review as rv

        t = rv.tally(self.state)
        if self.blind.isChecked():
            return f"reviewed {t.n_reviewed}/{t.n_nuclei} (calls hidden in blind mode)"
        lines = [f"reviewed {t.n_reviewed}/{t.n_nuclei} · corrected {t.n_corrected}"]
        lines += [f"{k}: {v}" for k, v in t.per_call.items() if v]
        lines.append(f"unscorable: {t.n_unscorable}")
        if t.n_scorable:
            lines.append(f"clone ({'+'.join(self.state.panel.tracked_calls)}) {t.clone_count}/{t.n_scorable} = "
                         f"{t.clone_pct:.1f}% (95% CI {t.ci_low_pct:.1f}–{t.ci_high_pct:.1f}, Clopper–Pearson)")
        return "<br>".join(lines)

    def _show_tally(self) -> None:
        try:
            self.tally_label.setText(self.tally_text())
        except Exception as exc:  # noqa: BLE001
            self.tally_label.setText(f"tally unavailable: {exc}")

    # -- outputs -------------------------------------------------------------------------------
    def gallery(self) -> np.ndarray:
        """Nucleus crops grouped by (reviewed) call: :func:`fishcount.overlay.render_gallery`."""
        import fishcount as fc
        from fishcount.analyze import FieldResult
        from fishcount.overlay import render_gallery

        from ._reader import read_analysed_field, read_labels

        if self.blind.isChecked():
            raise ValueError("the gallery groups nuclei by call, which blind mode hides")
        src = self.context.get("source")
        if not src:
            raise ValueError("the field's source image is not known (field.json), so no gallery")
        # the image as the analysis read it: its series, plane, axes and channel mapping
        field = read_analysed_field({**self.context, "pixel_size_um": self.pixel_size_um}, self.state.panel)
        # the probe channels as the analysis saw them (calibrated shift, unmixed crosstalk), under their markers
        field = fc.channels_as_analysed(field, self.context.get("params", {}), self.state.panel)
        result = FieldResult(field=field, labels=read_labels(self.folder), nuclei=self.state.nuclei,
                             spots=self.state.spots, thresholds=self.context.get("thresholds", {}),
                             params=self.context.get("params", {}), panel=self.state.panel)
        return render_gallery(result, per_call=10)

    def show_gallery(self) -> None:
        try:
            img = np.ascontiguousarray(self.gallery())
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, "cannot show the gallery")
            return
        self.gallery_image = img
        h, w, _ = img.shape
        q = QImage(img.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self.gallery_label.setPixmap(QPixmap.fromImage(q))
        self.gallery_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.gallery_area.setVisible(True)

    def save_tables(self):
        """Write ``nuclei.reviewed.<reviewer>.csv`` / ``spots.reviewed.<reviewer>.csv`` beside the results."""
        from fishcount import review as rv

        try:
            paths = rv.write_reviewed(self.state, self.folder, self._reviewer())
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, "not written")
            return None
        self.saved_label.setText(f"written {paths[0].name}, {paths[1].name}")
        return paths

    def recompute_samples(self):
        """Rescore the run's samples and responses with this reviewer's corrections
        (``samples.reviewed.<reviewer>.csv``, ``response.reviewed.<reviewer>.csv``)."""
        from fishcount import review as rv

        if self.study is None:
            self._fail(ValueError("open a fishcount run folder to recompute its samples"), "not done")
            return None
        try:
            path, done = rv.write_reviewed_samples(self.study, self._reviewer())
            resp = rv.write_reviewed_response(self.study, self._reviewer())
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, "not written")
            return None
        self.saved_label.setText(f"written {path.name} and {resp.name} ({len(done)} reviewed field(s))")
        return path

    def _refresh_compare(self) -> None:
        from fishcount import review as rv

        me = self._reviewer()
        self.compare_box.clear()
        self.compare_box.addItems([r for r in rv.list_journals(self.folder) if r != me])

    def compare(self, other: str):
        """Concordance of this reviewer and ``other`` on this field (agreement %, Cohen's kappa)."""
        from fishcount import review as rv

        try:
            b = rv.open_review(self.folder, other, self.state.panel, field=self.state.field)
            c = rv.concordance(self.state, b, reader_a=self._reviewer(), reader_b=other)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, "cannot compare")
            return None
        self.concordance_label.setText(c.summary())
        return c


__all__ = ["ReviewWidget", "UNSCORABLE_REASONS"]
