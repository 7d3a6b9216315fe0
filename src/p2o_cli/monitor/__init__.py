"""Watching a job: progress bars and timestamped log lines, and metrics for experiment trackers."""
