"""Drive voltage-verify's configfs-TSM quote request (voltage_verify.attest.tsm_quote), as its attest
command does, with a fixed 64-byte report_data; exit 0 with the quote's length, 1 on its error."""
import sys
from voltage_verify.attest import AttestError, tsm_quote
try:
    q = tsm_quote(bytes(range(64)))
except AttestError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
print(f"quote: {len(q)} bytes")
