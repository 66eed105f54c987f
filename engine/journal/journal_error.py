"""The journal's exceptions: one base class, one subclass per way a file can be wrong.

Every message names the file (and, for corruption, the byte offset) and says what is wrong.
These are I/O errors, not order-path rejections, so raising is the right tool here.
"""

from __future__ import annotations


class JournalError(Exception):
    """Base class of every journal and snapshot error."""


class NotAJournal(JournalError):
    """The path is not a journal: missing, not a directory, wrong magic or unexpected file name."""


class UnsupportedVersion(JournalError):
    """The file is a journal file of a format version this code does not read."""


class HeaderMismatch(JournalError):
    """The file header disagrees with the file name (first sequence number of a segment or snapshot)."""


class JournalLocked(JournalError):
    """Another writer holds the journal directory."""


class JournalCorruption(JournalError):
    """Data that was once written is damaged: never skipped, never returned.

    ``path`` and ``offset`` locate the first bad byte range (the record header's offset).
    """

    def __init__(self, path: str, offset: int, what: str) -> None:
        super().__init__(f"{path}: corrupt at byte offset {offset}: {what}")
        self.path = path
        self.offset = offset
