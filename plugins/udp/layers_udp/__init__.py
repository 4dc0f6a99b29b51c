"""The udp plugin for layers (work in progress)."""
