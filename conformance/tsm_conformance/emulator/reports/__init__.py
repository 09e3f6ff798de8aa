"""The emulator's report builders: a second, independent encoding of each report format (written
from the specifications, never importing `tsm_conformance.formats` or `tsm_conformance.verify`)."""
