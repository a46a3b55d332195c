"""Benchmarks (``make bench``): one ``bench_<stage>.py`` module per stage.

Each module has ``main() -> None`` that prints its figures, each next to the baseline it
measured in the same run (a ratio reads the same on a busy or idle machine). A module may
take ``BENCH_QUICK=1`` from the environment to run a shorter version.
"""
