"""fishcount: interphase FISH scoring for bone-marrow clones.

The public API is flat::

    import fishcount as fc
    field = fc.read_field("field01.ome.tif", panel="del5q")
    result = fc.analyze_field(field)
    result.nuclei.head()

Data flow, one way: ``io -> segment -> spots -> calls -> scoring -> response -> cohort``.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily, so ``import fishcount`` stays fast)
_API: dict[str, str] = {
    # errors
    "FishcountError": "errors", "InputError": "errors", "PanelError": "errors", "CriteriaError": "errors",
    # panels
    "load_panel": "panels", "list_panels": "panels", "Panel": "panels", "Signal": "panels",
    "DEFAULT_PANEL": "panels",
    # io
    "read_field": "io", "Field": "io", "field_from_arrays": "io", "describe_field": "io",
    "find_fields": "io", "stem_of": "io", "saturation_level": "io", "read_one_channel": "io",
    "image_positions": "io", "split_series": "io", "Position": "io", "with_positions": "io",
    # simulate
    "simulate_field": "simulate", "SimulatedField": "simulate", "write_simulated_field": "simulate",
    # segment
    "segment_nuclei": "segment", "Segmentation": "segment", "estimate_nucleus_diameter": "segment",
    # spots / calls / pipeline
    "detect_signals": "spots", "merge_split_signals": "spots", "pair_fusions": "spots",
    "estimate_signal_sigma_px": "spots", "spot_sigma_px": "spots", "remove_hot_pixels": "spots",
    "correct_channel_shift": "spots", "estimate_channel_shift": "spots",
    "estimate_crosstalk": "spots", "crosstalk_at": "spots", "unmix_crosstalk": "spots", "display_mixing": "spots",
    "call_nuclei": "calls",
    "analyze_field": "analyze", "FieldResult": "analyze", "write_field_result": "analyze",
    "estimate_thresholds": "analyze", "parse_channel_shifts": "analyze",
    "correct_channel_shifts": "analyze", "parse_crosstalk": "analyze", "channels_as_analysed": "analyze",
    "calibrations_for_panel": "analyze", "check_calibrations": "analyze",
    "load_settings": "settings", "Settings": "settings", "settings_template": "settings",
    "render_overlay": "overlay", "render_gallery": "overlay",
    # scoring / cut-offs / response / cohort
    "score_sample": "scoring", "score_samples": "scoring", "clopper_pearson": "scoring",
    "iscn_string": "scoring", "SampleScore": "scoring", "parse_iscn": "scoring",
    "compute_cutoffs": "cutoffs", "cutoff_for_n": "cutoffs", "load_cutoffs": "cutoffs",
    "write_cutoffs": "cutoffs", "cutoffs_by_panel": "cutoffs",
    "classify_response": "response", "load_criteria": "response", "list_criteria": "response",
    "response_table": "response", "ResponseResult": "response", "write_response": "response",
    "plot_trajectory": "plots",
    "classify_clinical_response": "clinical", "summarize_clinical_response": "clinical",
    "overall_trial_response": "clinical", "load_clinical_criteria": "clinical",
    "list_clinical_criteria": "clinical", "read_clinical_csv": "clinical",
    "cohort_summary": "cohort", "compare_groups": "cohort", "compare_counts": "cohort",
    "read_response_table": "cohort",
    # batch / report
    "run_batch": "batch", "read_manifest": "batch",
    "write_report": "report",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    mod = _API.get(name)
    if mod is None:
        raise AttributeError(f"module 'fishcount' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
