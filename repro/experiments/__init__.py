"""Experiments: runs of the pipeline with changed parameters, kept as git commits under
``refs/exps/`` (never branches), made in isolated working copies that share the cache."""
