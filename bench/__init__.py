"""
Benchmarks of dyndns_plugin (measurements, not tests). Run each one from the
repository root as a module, e.g. C{python -m bench.dns_qps --short}; it writes
its record to bench/results/<name>.json, and C{python -m bench.report} renders
bench/RESULTS.md and the plots under docs/bench/ from the records.
"""
