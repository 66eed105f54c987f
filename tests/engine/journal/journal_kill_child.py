"""Child process for the kill -9 test: append and commit forever, acknowledging each commit.

Usage: python journal_kill_child.py DIRECTORY POLICY SEED ACK_PATH

After every ``commit()`` returns, the last committed seq is written (8 bytes, little-endian,
``pwrite`` at offset 0) to ACK_PATH: that is the acknowledgement the parent checks against. Batch
sizes are random and some payloads are large (MBs in one ``os.write``) so that a kill can land
inside a write and leave a torn tail.
"""

from __future__ import annotations

import os
import random
import sys


def calc_payload(seq: int) -> bytes:
    """Deterministic payload: mostly 0..191 bytes (a third of them the 64-byte wire size), every
    50th one 128 KiB so that much of the child's time is spent inside ``os.write``."""
    n = 128 << 10 if seq % 50 == 0 else 64 if seq % 3 == 0 else seq * 7919 % 192
    return (seq.to_bytes(8, "little") * (n // 8 + 1))[:n]


def main() -> None:
    directory, policy, seed, ack_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    from engine.journal import JournalWriter

    rng = random.Random(seed)
    ack_fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT, 0o644)
    writer = JournalWriter(directory, fsync_policy=policy, segment_bytes=256 << 10)
    while True:
        count = rng.choice((1, 2, 7, 64, 300))
        first = writer.next_seq
        writer.append_many([calc_payload(seq) for seq in range(first, first + count)])
        seq = writer.commit()
        os.pwrite(ack_fd, seq.to_bytes(8, "little"), 0)


if __name__ == "__main__":
    main()
