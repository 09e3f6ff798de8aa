"""Imports every check module so their @check registrations run."""

from . import (attributes, cleanup, concurrency, discovery, generation, host, inblob, lifecycle,  # noqa: F401
               measurements, outblob, privlevel, provider, report, service, statemachine)
