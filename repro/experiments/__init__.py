"""Experiments: runs of the pipeline with changed parameters, kept as git commits under
``refs/exps/`` (never branches), made in isolated working copies that share the cache."""

# Set in the environment of the repro that runs an experiment in its copy: what it would tell a
# user (git add the stage files) the experiment's commit does itself.
IN_EXPERIMENT = "REPRO_EXPERIMENT"
