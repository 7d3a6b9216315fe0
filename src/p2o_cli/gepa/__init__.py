"""GEPA for P²O: the Pareto front, the reflective search loop, reflectors and template assignment.

Import from the module that holds a name (``gepa.search.run_gepa``, ``gepa.assign.assign_templates``):
the command line loads ``gepa.config`` for its options without the search loop and its reflectors.
"""
