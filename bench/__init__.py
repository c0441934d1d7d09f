"""The benchmarks: each `bench/<name>.py` runs as a script (`python bench/<name>.py`);
`bench.proof` also as a module (`python -m bench.proof`)."""
