"""The emulator's report builders: a second, independent encoding of each report format (written
from the specifications, never importing `tsm_conformance.formats` or `tsm_conformance.verify`)."""


def anchor_pems() -> list[bytes]:
    """Every emulated root: AMD ARK, Intel SGX root CA, Arm CCA platform key (`--trust-anchor emulator`)."""
    from . import cca, snp, tdx
    return [snp.anchor_pem(), tdx.anchor_pem(), cca.anchor_pem()]
