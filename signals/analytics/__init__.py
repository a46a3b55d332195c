"""Outcome statistics, the calibrated scoring model and the HTML report (issue 12 §2-§5).

Pure maths over outcome records and bars (:mod:`.frames`, :mod:`.stats`,
:mod:`.calibration`), with thin shells for files (``replay --out``'s JSONL), the database
(:mod:`.db`, the ``outcome_rows`` view) and the command line (:mod:`.cli`).
See ``docs/statistics.md``.
"""
