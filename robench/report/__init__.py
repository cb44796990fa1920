"""Reports: a results directory -> Table I, Figs. 2-7 and the robustness tables; never touches a model.

:mod:`~robench.report.loader` reads what runs, sweeps and audits wrote; :mod:`~robench.report.table1`,
:mod:`~robench.report.figures`, :mod:`~robench.report.robustness` and
:mod:`~robench.report.worst_case_figure` render from it (with :mod:`~robench.report.plotting` and
:mod:`~robench.report.formatting`); :mod:`~robench.report.write` renders everything and writes it.
"""
