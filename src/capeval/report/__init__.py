"""The self-contained HTML report: `build_report(store, run_ids, out)` or `capeval report RUN...`."""

from capeval.report.builder import ReportOptions, build_report, render_report
from capeval.report.data import ReportError, load_inputs

__all__ = ["ReportError", "ReportOptions", "build_report", "load_inputs", "render_report"]
