"""stages: see ARCHITECTURE.md."""
