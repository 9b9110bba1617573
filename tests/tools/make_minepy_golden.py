"""Write tests/data/minepy_golden.json: minepy's MIC / TIC on seeded samples, the oracle for
crlbench.metrics.mine. minepy is GPL-3.0 and not a dependency: run this with a local build of
minepy 1.2.6 (it does not build on Python 3.11 or NumPy 2 as released; in a virtual environment:
``pip install 'setuptools<70' 'numpy<2' 'cython<3' wheel``, unpack the minepy 1.2.6 source
distribution, regenerate ``minepy/mine.c`` with ``cython -3 minepy/mine.pyx -o minepy/mine.c`` and
``pip install --no-build-isolation .``), e.g. ``/path/to/minepy-venv/bin/python tests/tools/make_minepy_golden.py``.
"""

import json
from pathlib import Path

import numpy as np
from minepy import MINE


def fixture_pairs():
    """The metrics reference fixture (train half, n = 2000) and harder samples: ties, small n."""
    rs = np.random.RandomState(0)
    ys = rs.randint(0, 10, size=(3, 2000)).astype(np.float64)
    eps = rs.randn(4, 2000)
    z = [ys[0] + .1 * eps[0], ys[1] + .5 * ys[0] + .1 * eps[1], ys[2] ** 2 / 10 + .1 * eps[2], eps[3]]
    pairs = {f"fixture_z{i}_y{k}": (z[i], ys[k]) for i in range(4) for k in range(3)}
    pairs["fixture_flat"] = (np.stack(z[:3], 1).ravel(), ys.T.ravel())
    rs = np.random.RandomState(1)
    line = np.linspace(0, 1, 1000)
    pairs["minepy_example"] = (line, np.sin(10 * np.pi * line) + line)
    x = rs.randn(500)
    pairs["noisy_sine"] = (x, np.sin(3 * x) + 0.3 * rs.randn(500))
    pairs["independent_small"] = (rs.randn(60), rs.randn(60))
    pairs["ties_both"] = (rs.randint(0, 4, 400).astype(float), rs.randint(0, 3, 400).astype(float))
    pairs["ties_one"] = (rs.randint(0, 5, 700).astype(float), rs.randn(700))
    return pairs


def main():
    settings = [(0.6, 15, "mic_approx"), (0.6, 15, "mic_e"), (0.3, 5, "mic_approx"), (9, 15, "mic_approx")]
    golden = []
    for name, (x, y) in fixture_pairs().items():
        for alpha, c, est in settings:
            mine = MINE(alpha=alpha, c=c, est=est)
            mine.compute_score(x, y)
            golden.append({"pair": name, "alpha": alpha, "c": c, "est": est, "mic": mine.mic(),
                           "tic": mine.tic(), "tic_norm": mine.tic(norm=True)})
    path = Path(__file__).resolve().parents[1] / "data" / "minepy_golden.json"
    path.write_text(json.dumps(golden, indent=1))
    print(f"wrote {len(golden)} values to {path}")


if __name__ == "__main__":
    main()
