"""Speed and memory benchmarks: one script per family (`benchmarks/<family>.py`, runnable on its
own) and the suite that runs them all with the models (`python -m benchmarks`, see
`benchmarks/registry.py` and `benchmarks/README.md`)."""
