"""Reports: a results directory -> Table I, Figs. 2-7 and the robustness tables; never touches a model.

:mod:`~robench.report.loader` reads what runs, sweeps and audits wrote; tables are pandas groupbys and
pivots of tidy frames, and every accuracy carries its 95 % Wilson interval (:mod:`~robench.report.intervals`).
:mod:`~robench.report.table1`, :mod:`~robench.report.figures` (with :mod:`~robench.report.attack_figures`),
:mod:`~robench.report.robustness` (with :mod:`~robench.report.robustness_text`,
:mod:`~robench.report.audit_table`) and :mod:`~robench.report.worst_case_figure` render from it; a bare
attacks CSV (no run metadata) gets :mod:`~robench.report.bare_csv` and
:mod:`~robench.report.checkpoint_table`; :mod:`~robench.report.plotting` and
:mod:`~robench.report.formatting` are shared; :mod:`~robench.report.write` renders everything and writes it.
"""
