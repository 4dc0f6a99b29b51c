"""The icmp plugin for layers (work in progress)."""
