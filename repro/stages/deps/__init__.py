"""What a stage reads: one module per kind of dependency, listed in kinds.py."""
