"""Writer contribution: save the reviewed nuclei table of a ``nuclei`` Labels layer as CSV.

The layer's ``metadata["fishcount"]`` names the field result folder and the reviewer; the table is
rebuilt from the reviewer's journal with :func:`fishcount.review.open_review` and written atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fishcount._atomic import write_csv_atomic
from fishcount.errors import InputError

from ._layers import META


def write_reviewed_calls(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer: the reviewed ``nuclei`` table of the layer's field, as CSV.

    Raises
    ------
    InputError
        If the layer does not come from a fishcount result folder under review.
    """
    from fishcount import review as rv

    ctx = dict(meta.get("metadata", {}).get(META, {}) or {})
    folder, reviewer = ctx.get("field_dir"), ctx.get("reviewer")
    if not folder or not reviewer:
        raise InputError(path, "this layer is not a fishcount field under review (open it with the Review widget)")
    state = rv.open_review(folder, reviewer, ctx.get("panel"), field=Path(folder).name)
    out = Path(path)
    if out.suffix.lower() != ".csv":
        out = out.with_suffix(".csv")
    write_csv_atomic(state.nuclei, out)
    return [str(out)]
