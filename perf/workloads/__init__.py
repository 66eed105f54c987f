"""Standard workloads for benchmarks and differential tests (see ``standard_stream``)."""
