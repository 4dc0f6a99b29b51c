"""The ipv4 plugin for layers (work in progress)."""
