"""configfs-tsm-conformance: conformance checks for Linux configfs-tsm report providers.

Import root of the conformance half of the project. See ARCHITECTURE.md for the layers.
"""

__version__ = "0.1.0"

DEFAULT_ROOT = "/sys/kernel/config/tsm/report"
