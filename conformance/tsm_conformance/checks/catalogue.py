"""Imports every check module so their @check registrations run."""

from . import attributes, cleanup, discovery, generation, inblob, lifecycle, outblob, privlevel, service  # noqa: F401
