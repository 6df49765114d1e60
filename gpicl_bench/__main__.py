"""`python -m gpicl_bench`, the same entry point as the `gpicl-bench` script (and what torchrun launches)."""

from gpicl_bench.entry import main

main()
