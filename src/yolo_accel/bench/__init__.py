"""Side-by-side benchmarks: timing harness (timing.py) and the backend x batch runner (runner.py)."""
