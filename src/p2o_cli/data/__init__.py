"""Training problems: loading them from files or the hub, choosing rows, the paper's recipes, and
how a problem becomes a chat prompt (with or without a template)."""
