"""Devices under test: Linux in a namespace, and our stack over a memory link or a TAP."""
