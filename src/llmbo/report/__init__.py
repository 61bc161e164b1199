"""Reports people would rather look at than read: figures and one-file HTML pages.

``llmbo report STUDY`` writes :func:`~llmbo.report.html.study_report_html` for any stored
study; the same figures come from Python as matplotlib figures
(:mod:`llmbo.report.figures`), built from :func:`~llmbo.report.data.load_study_data`.
"""

from llmbo.report.data import StudyData, load_study_data
from llmbo.report.figures import (
    calibration_figure,
    catalyst_figure,
    expected_random_best,
    feature_map_figure,
    importance_figure,
    interval_coverage,
    parallel_coordinates_figure,
    parameter_importance,
    progress_figure,
    slice_figure,
)
from llmbo.report.html import benchmark_report_html, study_report_html, write_html

__all__ = [
    "StudyData",
    "benchmark_report_html",
    "calibration_figure",
    "catalyst_figure",
    "expected_random_best",
    "feature_map_figure",
    "importance_figure",
    "interval_coverage",
    "load_study_data",
    "parallel_coordinates_figure",
    "parameter_importance",
    "progress_figure",
    "slice_figure",
    "study_report_html",
    "write_html",
]
