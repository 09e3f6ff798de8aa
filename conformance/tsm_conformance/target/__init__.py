"""Targets: the narrow Tree protocol and its implementations (live syscalls, in-process emulator)."""

from .base import Stat, Tree, read_all, read_text, write_once
from .live import LiveTree

__all__ = ["Stat", "Tree", "LiveTree", "read_all", "read_text", "write_once"]
