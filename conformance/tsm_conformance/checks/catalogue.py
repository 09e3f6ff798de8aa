"""Imports every check module so their @check registrations run."""

from . import (attributes, cleanup, concurrency, discovery, generation, inblob, lifecycle, outblob, privlevel,  # noqa: F401
               provider, service)
