"""The arp plugin for layers (work in progress)."""
