"""RL for p2o: pure tensor functions (``core_algos``) and the train step.

Nothing in this package reads or writes files; callers hand it tensors.
"""
