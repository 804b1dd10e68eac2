"""See a selection: the HTML report of a run directory, runs side by side, and one record explained.

``write_report(run_dir)`` writes ``RUN_DIR/report.html``: one self-contained page (inline CSS, inline
SVG charts, the map as one canvas drawn by a few lines of inline script) that loads nothing.
``compare_runs(run_dirs)`` tabulates the diagnostics of several runs; ``explain(run_dir, id)`` says
where one pool record went and why. ``write_experiment_report(dir)`` writes the page of a ``kmq experiment``
folder: its results table and the diagnostics of every cell's selection.
"""

from kmq.report._compare import compare_runs, write_compare
from kmq.report._experiment import is_experiment, render_experiment, write_experiment_report
from kmq.report._explain import explain, format_explanation
from kmq.report._report import render_report, write_report
from kmq.report._rundir import RunData

__all__ = ["RunData", "compare_runs", "explain", "format_explanation", "is_experiment", "render_experiment",
           "render_report", "write_compare", "write_experiment_report", "write_report"]
