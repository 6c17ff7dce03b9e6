"""Stages run as tasks on a Dask cluster: ``task`` is what a worker executes, ``client`` the
user's side that submits them. ``distributed`` is imported by these modules alone, lazily."""
