"""crlbench: a benchmark harness for causal representation learning.

Importing ``bench`` is cheap: heavy libraries (torch, mlflow, optuna) load only where used.
"""

__version__ = "0.1.0"
