"""``p2o report``: figures and tables from run directories, one run at a time or aggregated over seeds."""
