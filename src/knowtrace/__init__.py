"""knowtrace: what each learner knows, at every moment."""

__version__ = "0.1.0"

