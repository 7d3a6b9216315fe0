"""The files between p2o's commands: record types and JSONL, where outputs may go and how they are
written atomically, weight-file integrity, and the fault-injection hook the reliability tests use."""
