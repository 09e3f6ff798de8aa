"""tsm_fuzz: fuzzing and stateful testing of configfs-tsm trees (atheris, Hypothesis).

May import ``tsm_conformance`` (checks as oracles, the Tree protocol, the emulator); never the
reverse.  The harnesses (inblob, privlevel, concurrent mkdir/read sequences) are the subject of
the operation-sequence and fuzzing work and live in this package when they land.
"""
