"""Parse PostgreSQL's ``pgoutput`` logical replication messages (protocol version 1).

Pure functions over the ``bytea`` rows that ``pg_logical_slot_peek_binary_changes(...,
'proto_version', '1', 'publication_names', ..., 'messages', 'true')`` returns: one message
per row. Only what the decoder (:mod:`triggers.decoder`) needs is kept: transaction
boundaries with their LSNs and commit time, relation descriptions, row changes as text
values, and logical messages. Format reference: "Logical Replication Message Formats" in
the PostgreSQL documentation; integers are big-endian.

In protocol 1 every column value is sent as text (the type's output function), ``None`` for
NULL, or :data:`UNCHANGED` for an unchanged TOASTed value of an UPDATE's new row (the old
row then has it: tables are captured with ``REPLICA IDENTITY FULL``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

#: PostgreSQL's epoch for timestamps in the protocol.
PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)


class Unchanged:
    """Marker of a TOASTed value the UPDATE did not change (``'u'`` in the protocol)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()

Value = str | None | Unchanged


class ProtocolError(ValueError):
    """A message this parser does not understand (names the byte and offset)."""


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    committed_at: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    committed_at: datetime


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """An INSERT, UPDATE or DELETE: ``old``/``new`` map column names to text values."""

    operation: str  # "insert" | "update" | "delete"
    relation_oid: int
    old: tuple[Value, ...] | None
    new: tuple[Value, ...] | None
    #: The old row holds the replica identity's key columns only (the rest NULL): the
    #: table was not REPLICA IDENTITY FULL when the change was written.
    old_is_key_only: bool = False


@dataclass(frozen=True)
class Message:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Parsed = Begin | Commit | Relation | Change | Message | None


def format_lsn(lsn: int) -> str:
    """``0/1AF8A08``: how PostgreSQL prints a ``pg_lsn``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProtocolError(f"message truncated at byte {self.pos} (wanted {size} more)")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return int(value)

    def byte(self) -> str:
        return chr(self.take(">B"))

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolError(f"unterminated string at byte {self.pos}")
        text = self.data[self.pos : end].decode()
        self.pos = end + 1
        return text

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError(f"message truncated at byte {self.pos} (wanted {n} more)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def timestamp(self) -> datetime:
        return PG_EPOCH + timedelta(microseconds=self.take(">q"))

    def tuple(self) -> tuple[Value, ...]:
        values: list[Value] = []
        for _ in range(self.take(">H")):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED)
            elif kind == "t":
                values.append(self.raw(self.take(">I")).decode())
            else:
                raise ProtocolError(f"unknown tuple value kind {kind!r} at byte {self.pos - 1}")
        return tuple(values)


def parse(data: bytes) -> Parsed:
    """One pgoutput message; ``None`` for kinds the decoder has no use for (type, origin,
    truncate: TRUNCATE fires no row triggers either, so neither mode captures it)."""
    r = _Reader(data)
    kind = r.byte()
    if kind == "B":
        return Begin(final_lsn=r.take(">Q"), committed_at=r.timestamp(), xid=r.take(">I"))
    if kind == "C":
        r.take(">B")  # flags, unused
        return Commit(commit_lsn=r.take(">Q"), end_lsn=r.take(">Q"), committed_at=r.timestamp())
    if kind == "R":
        oid = r.take(">I")
        namespace, name = r.string(), r.string()
        r.take(">B")  # replica identity setting
        columns = []
        for _ in range(r.take(">H")):
            r.take(">B")  # flags (part of the key)
            columns.append(r.string())
            r.take(">I")  # type oid
            r.take(">i")  # type modifier
        return Relation(oid=oid, namespace=namespace, name=name, columns=tuple(columns))
    if kind == "I":
        oid = r.take(">I")
        if r.byte() != "N":
            raise ProtocolError("INSERT without a new tuple")
        return Change("insert", oid, None, r.tuple())
    if kind == "U":
        oid = r.take(">I")
        old = None
        marker = first = r.byte()
        if marker in ("K", "O"):
            old = r.tuple()
            marker = r.byte()
        if marker != "N":
            raise ProtocolError(f"UPDATE without a new tuple (got {marker!r})")
        return Change("update", oid, old, r.tuple(), old_is_key_only=first == "K")
    if kind == "D":
        oid = r.take(">I")
        marker = r.byte()
        if marker not in ("K", "O"):
            raise ProtocolError("DELETE without an old tuple")
        return Change("delete", oid, r.tuple(), None, old_is_key_only=marker == "K")
    if kind == "M":
        transactional = bool(r.take(">B") & 1)
        lsn = r.take(">Q")
        prefix = r.string()
        return Message(transactional, lsn, prefix, r.raw(r.take(">I")))
    if kind in ("Y", "O", "T"):
        return None
    raise ProtocolError(f"unknown pgoutput message kind {kind!r}")
