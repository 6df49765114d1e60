"""gpicl-bench: benchmark in-context and few-shot learners on the very same seeded episodes."""

__version__ = "0.1.0"
