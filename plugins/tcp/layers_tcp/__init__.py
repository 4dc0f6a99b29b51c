"""The tcp plugin for layers (work in progress)."""
