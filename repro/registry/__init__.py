"""Another repository that tracks data with repro, used as a data registry: ls, get, import."""
