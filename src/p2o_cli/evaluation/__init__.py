"""Benchmark evaluation: the benchmark registry, the paper's protocols, the paper's published
figures to compare against, and the scan of benchmark golds."""
