"""Reports built from result.json files only (never imports a task)."""
from mec_eval.report.collect import collect_results, results_table
from mec_eval.report.html import write_html_report

__all__ = ["collect_results", "results_table", "write_html_report"]
