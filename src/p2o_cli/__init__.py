"""p2o: joint policy and prompt optimization."""
__version__ = "0.1.0"
