"""memo: see ARCHITECTURE.md."""
