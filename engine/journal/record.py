"""One journal record: a 16-byte header, then the payload.

Layout (little-endian)::

    u32 payload_bytes | u32 crc32c(seq bytes + payload) | u64 seq | payload

The seq field sits right before the payload, so the checksum covers one contiguous byte range
(``record[8:]``). Sequence numbers are consecutive across the whole journal.
"""

from __future__ import annotations

import struct

from crc32c import crc32c

RECORD_HEADER = struct.Struct("<IIQ")
RECORD_HEADER_BYTES = RECORD_HEADER.size  # 16
SEQ = struct.Struct("<Q")
MAX_PAYLOAD_BYTES = (1 << 32) - 1


def calc_record_crc(seq: int, payload: bytes) -> int:
    """crc32c over the 8 little-endian seq bytes followed by the payload."""
    return crc32c(payload, crc32c(SEQ.pack(seq)))


def pack_record(seq: int, payload: bytes) -> bytes:
    """The full record bytes (header + payload); the writer inlines the same steps."""
    return RECORD_HEADER.pack(len(payload), calc_record_crc(seq, payload), seq) + payload


def find_valid_record(data: bytes, start: int, seqs: range) -> int:
    """Offset (> start) of a checksum-valid record whose seq is in ``seqs``, or -1.

    Used only after a bad record, to tell a torn tail (nothing valid follows) from damage in the
    middle of a segment (valid records follow). The seq bytes are searched with ``bytes.find``,
    so the cost is a few C scans of the bytes after the bad record.
    """
    end = len(data)
    for seq in seqs:
        needle = SEQ.pack(seq)
        pos = data.find(needle, start + 9)
        while pos != -1:
            head = pos - 8
            n, crc, _ = RECORD_HEADER.unpack_from(data, head)
            stop = pos + 8 + n
            if stop <= end and crc32c(memoryview(data)[pos:stop]) == crc:
                return head
            pos = data.find(needle, pos + 1)
    return -1
