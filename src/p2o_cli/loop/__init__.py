"""``p2o run``: the alternating P²O loop, its configuration, its run directory and its ranks."""
