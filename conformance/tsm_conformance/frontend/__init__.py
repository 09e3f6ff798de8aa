"""Frontends that present the in-process emulator to other programs (``fuse``: a real mount)."""
