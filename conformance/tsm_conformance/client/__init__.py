"""``tsm-conformance client -- CMD``: run an attestation client against the emulated report group.

``runner.py`` starts ``jail.py`` in a private mount namespace (``unshare``), where
``/sys/kernel/config`` is an ``emulate --trace`` FUSE mount and everything else under
``/sys/kernel`` is bound back, so the unmodified client finds its usual path and every operation it
makes lands in the trace (frontend/trace.py).  ``rules.py`` holds the client rules judged over the trace.
"""
