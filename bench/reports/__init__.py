"""Reports: bootstrap intervals, paired tests and ranks (``stats``), the figures (``figures``), the
leaderboards, LaTeX tables and self-contained HTML of a suite (``report``, with the Jinja template in
``templates/``), the rows it may pool (``pooling``), per-cell scores as a frame (``scores_frame``), two sets of
scores side by side (``compare``) and the sample grids of a dataset (``preview``).

May import: :mod:`crlbench.core`; results arrive as records (dicts) and images as arrays, so nothing
here imports torch, suites or tracking.
"""
