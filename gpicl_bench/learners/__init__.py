"""Few-shot learners, one module each; :mod:`gpicl_bench.learners.registry` names them for specs and the CLI."""
