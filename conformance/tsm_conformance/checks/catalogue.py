"""Imports every check module so their @check registrations run."""

from . import (attributes, cleanup, concurrency, discovery, generation, host, inblob, lifecycle, outblob,  # noqa: F401
               privlevel, provider, report, service, statemachine)
