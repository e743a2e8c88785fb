"""The registry's bulk import: a county's spreadsheet (CSV or XLSX, up to 1,000,000 rows) into
residents, with one event per new or changed resident in the outbox.

A file is read, checked and made ready (COPY text, event JSON) in a worker thread one chunk ahead
of the database, so Python and PostgreSQL overlap. Each chunk is one transaction (see
`_write_residents`): new residents are COPied straight into residents; rows whose ID number another
county registered are rejected; this county's residents go through a temporary staging table and one
INSERT … ON CONFLICT DO UPDATE … WHERE (something differs) RETURNING, so re-importing the same file
changes nothing (no update, no version, no event). Events go to the outbox and the job's counters
move in that same transaction: progress is what is committed, and a killed import keeps every
chunk it finished (re-importing the file completes it).

The same `run_import` serves the API (as an asyncio task in the registry process) and
`eldercare seed` (in its own process against the same database).
"""

from __future__ import annotations

import asyncio
import csv
import gc
import hashlib
import io
import logging
import os
import re
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import asyncpg

from services.registry.ids import time_ordered_uuids
from services.registry.domain.imports import (
    BIRTH_DATE, CATEGORIES, CONTRACT, COUNTY, GENDER, HOME_LAT, HOME_LON, ID, ID_NUMBER, LEVEL, LIVING, MAX_ROWS,
    NAME, ROW_NO, SIGNED_ON, STAGED_COLUMNS, STATUS, TOWNSHIP, VILLAGE, EncodingSniffer, HeaderMap, ImportFileError,
    ImportsBusy,
    MAX_CSV_LINE_BYTES, RowChecker, RowError, cell_text, csv_delimiter, csv_line_too_long_message, detect_kind,
    header_warnings, id_cell_text, is_blank, looks_like_header, map_headers, missing_columns_message,
    other_county_message, too_many_rows_message,
)
from services.registry.xlsx_guard import check_xlsx
from shared.idcard import mask_id_number
from shared.events.residents import ResidentRegistered, ResidentSnapshot, ResidentUpdated
from shared.messaging.outbox import add_rows, fast_event_json, fields_of
from shared.messaging.topics import topic_for_event_type
from shared.observability import current_traceparent
from shared.privacy import mask_personal
from shared.regions import load_counties

log = logging.getLogger(__name__)

SOURCE = "registry"
REGISTERED = "eldercare.resident.registered.v1"
UPDATED = "eldercare.resident.updated.v1"
TOPIC = topic_for_event_type(REGISTERED).name
# Big enough that per-transaction costs vanish, small enough that progress moves every second or so.
CHUNK_ROWS = 25_000
# Imports run one at a time per process (they are CPU- and disk-bound); a few more may wait.
MAX_JOBS_PER_PROCESS = 4
# An import that wrote this many rows is followed by a VACUUM (ANALYZE) of residents.
VACUUM_AFTER_ROWS = 50_000

# ---------------------------------------------------------------- reading the file ----------


@dataclass
class PreparedChunk:
    """One chunk of the file, checked: rows to stage, errors to record, how many rows it covered."""

    records: list[tuple]
    errors: list[RowError]
    processed: int
    rejected: int
    # Made in the reader thread too, on the bet that every row is new (true of a first import): the
    # rows as COPY text for residents, and their registered events as outbox rows (see prepare_inserts).
    copy_text: bytes | None = None
    registered: list[tuple] | None = None


class ImportFile:
    """An uploaded file opened for import: its header row and its data rows, read lazily."""

    def __init__(self, path: Path, kind: str | None = None) -> None:
        self.path = Path(path)
        with self.path.open("rb") as fh:
            head = fh.read(8)
        self.kind = kind or detect_kind(head)
        self._close: Callable[[], None] = lambda: None
        try:
            if self.kind == "csv":
                rows, self.estimated_rows = self._open_csv()
            else:
                rows, self.estimated_rows = self._open_sheet()
            self.header_row, self.headers, self._rows = self._find_header(rows)
            if self.headers.missing:
                raise ImportFileError(missing_columns_message(self.headers.missing))
            self.estimated_rows = max(0, self.estimated_rows - self.header_row)
            if self.estimated_rows > MAX_ROWS and self.kind != "csv":
                raise ImportFileError(too_many_rows_message(self.estimated_rows))
        except BaseException:
            self.close()
            raise

    # -- CSV: UTF-8 (BOM or not), GB18030 or UTF-16; comma or tab separated.
    def _open_csv(self) -> tuple[Iterator[tuple[int, list]], int]:
        sniffer = EncodingSniffer()
        lines = 0
        last = b""
        run = 0  # bytes since the last line break
        breaks = 0  # line breaks before this block
        with self.path.open("rb") as fh:
            while block := fh.read(1 << 20):
                sniffer.feed(block)
                # Bounded before parsing: the csv reader reads a line whole, so one 200 MB "line"
                # would be 200 MB (and more as text) in memory.
                fast = _line_run(block, run, MAX_CSV_LINE_BYTES)
                if fast is not None:
                    run = fast
                    breaks += block.count(b"\n")
                else:  # a long line, or line breaks of another kind (a lone \r: old Mac files)
                    pieces = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
                    run += len(pieces[0])
                    if run > MAX_CSV_LINE_BYTES or max(map(len, pieces)) > MAX_CSV_LINE_BYTES:
                        at = 0 if run > MAX_CSV_LINE_BYTES else next(
                            i for i, piece in enumerate(pieces) if len(piece) > MAX_CSV_LINE_BYTES)
                        raise ImportFileError(csv_line_too_long_message(breaks + at + 1))
                    if len(pieces) > 1:
                        run = len(pieces[-1])
                    breaks += len(pieces) - 1
                lines += block.count(b"\n")
                last = block
        if last and not last.endswith(b"\n"):
            lines += 1
        encoding = sniffer.encoding
        text = self.path.open(encoding=encoding, newline="")
        self._close = text.close
        try:
            first = text.readline()
        except UnicodeDecodeError:
            text.close()
            raise ImportFileError(_encoding_message()) from None
        text.seek(0)
        reader = csv.reader(text, delimiter=csv_delimiter(first))

        def rows() -> Iterator[tuple[int, list]]:
            try:
                for row_no, cells in enumerate(reader, start=1):
                    yield row_no, cells
            except UnicodeDecodeError:
                raise ImportFileError(_encoding_message(reader.line_num)) from None
            except csv.Error as exc:
                raise ImportFileError(f"第 {reader.line_num} 行附近的 CSV 格式有误 / the CSV is malformed near "
                                      f"line {reader.line_num}: {exc}") from None

        return rows(), lines

    # -- XLSX (and XLS) through calamine: the first sheet that has a header row.
    def _open_sheet(self) -> tuple[Iterator[tuple[int, list]], int]:
        import python_calamine

        if self.kind == "xlsx":
            check_xlsx(self.path)  # before calamine allocates anything (see xlsx_guard)
        try:
            book = python_calamine.CalamineWorkbook.from_path(str(self.path))
        except Exception as exc:  # noqa: BLE001 - calamine raises its own error types
            raise ImportFileError(
                f"无法读取这个表格文件,请另存为 .xlsx 或 .csv 后重试 / cannot read this spreadsheet "
                f"({type(exc).__name__}); save it as .xlsx or .csv and retry") from None
        self._close = book.close
        chosen = None
        for index in range(len(book.sheet_names)):
            sheet = book.get_sheet_by_index(index)
            top = sheet.to_python(nrows=10)
            if any(looks_like_header(row) for row in top):
                chosen = sheet
                break
            chosen = chosen or sheet
        if chosen is None:
            raise ImportFileError("表格里没有工作表 / the workbook has no sheet")
        start_row = (chosen.start or (0, 0))[0]

        def rows() -> Iterator[tuple[int, list]]:
            for i, cells in enumerate(chosen.iter_rows(), start=start_row + 1):
                yield i, cells

        return rows(), start_row + chosen.height

    @staticmethod
    def _find_header(rows: Iterator[tuple[int, list]]) -> tuple[int, HeaderMap, Iterator[tuple[int, list]]]:
        """The first row naming template columns is the header; title rows above it are skipped."""
        first: tuple[int, list] | None = None
        seen = 0
        for row_no, cells in rows:
            if is_blank(cells):
                continue
            texts = [cell_text(c).strip() for c in cells]
            if looks_like_header(texts):
                return row_no, map_headers(texts), rows
            first = first or (row_no, texts)
            seen += 1
            if seen >= 10:
                break
        if first is None:
            raise ImportFileError("文件是空的 / the file is empty")
        return first[0], map_headers(first[1]), rows

    def chunks(self, checker: RowChecker, chunk_rows: int = CHUNK_ROWS) -> Iterator[PreparedChunk]:
        """The data rows, checked, in chunks (runs in a worker thread, one chunk ahead)."""
        check = checker.check
        text_cells = self.kind != "csv"
        id_ix = self.headers.index["id_number"]
        records: list[tuple] = []
        processed = rejected_before = 0
        total = 0
        for row_no, cells in self._rows:
            if is_blank(cells):
                continue
            total += 1
            if total > MAX_ROWS:
                raise ImportFileError(too_many_rows_message(total))
            if text_cells:
                cells = [id_cell_text(c) if i == id_ix else cell_text(c) for i, c in enumerate(cells)]
            staged = check(row_no, cells)
            if staged is not None:
                records.append(staged)
            processed += 1
            if processed >= chunk_rows:
                yield self._chunk(checker, records, processed, rejected_before)
                rejected_before = checker.rejected
                records, processed = [], 0
        if processed:
            yield self._chunk(checker, records, processed, rejected_before)

    @staticmethod
    def _chunk(checker: RowChecker, records: list[tuple], processed: int,
               rejected_before: int) -> PreparedChunk:
        errors, checker.errors = checker.errors, []
        return PreparedChunk(records, errors, processed, checker.rejected - rejected_before)

    def close(self) -> None:
        self._close()


def _line_run(block: bytes, run: int, limit: int) -> int | None:
    """Given `run` bytes of an unfinished line before `block`, the length of the unfinished line at
    its end, or None if a line may exceed `limit` (then the caller looks closely). Jumps from line
    break to the farthest one within `limit` bytes: a few searches per megabyte, not one per line."""
    nl = block.find(b"\n", 0, max(limit - run + 1, 0))
    if nl < 0:
        run += len(block)
        return run if run <= limit else None
    at = nl
    while len(block) - at - 1 > limit:
        nxt = block.rfind(b"\n", at + 1, at + limit + 2)
        if nxt < 0:
            return None
        at = nxt
    return len(block) - block.rfind(b"\n", at) - 1


def _encoding_message(line: int | None = None) -> str:
    where = f"(第 {line} 行附近)" if line else ""
    return (f"文件编码无法识别{where}:请将 CSV 另存为 UTF-8 或 GBK/GB18030 编码 / the file is neither UTF-8 nor "
            f"GB18030 text{f' (near line {line})' if line else ''}; save the CSV as UTF-8 or GBK")


# ---------------------------------------------------------------- writing -------------------

_STAGING_DDL = (
    "CREATE TEMP TABLE import_staging (row_no integer, id uuid, id_number text, name text, phone text, "
    "county_code text, township text, village text, address text, living_arrangement text, "
    "categories text[], ability_level smallint, emergency_contact text, emergency_phone text, "
    "home_lat double precision, home_lon double precision, birth_date date, gender text, status text, "
    "family_doctor_contract boolean, family_doctor_signed_on date) "
    "ON COMMIT DROP"
)
# What a chunk needs to know of residents already registered under its ID numbers.
_EXISTING = (
    "SELECT id_number, county_code, name, phone, township, village, address, living_arrangement, "
    "categories, ability_level, emergency_contact, emergency_phone, status, home_lat, home_lon, "
    "family_doctor_contract, family_doctor_signed_on FROM residents WHERE id_number = ANY($1::text[])"
)
_OWNERS = "SELECT id_number, county_code FROM residents WHERE id_number = ANY($1::text[])"
RESIDENT_COLUMNS = STAGED_COLUMNS[ID:]
# Compared to decide "changed"; the same list drives the SQL and the event's `changed`.
_COMPARED = ("name", "phone", "township", "village", "address", "living_arrangement", "emergency_contact",
             "emergency_phone")
_STAGED_INDEX = {name: i for i, name in enumerate(STAGED_COLUMNS)}


def upsert_sql() -> str:
    """Insert new residents; update same-county residents whose record differs; leave the rest alone.
    An empty ability level keeps the assessed one, an empty home location the stored one (the caller
    fills an empty status, and an empty family-doctor contract with its date, with the current ones)."""
    old = ", ".join(f"r.{c}" for c in _COMPARED)
    new = ", ".join(f"EXCLUDED.{c}" for c in _COMPARED)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COMPARED)
    columns = ", ".join(RESIDENT_COLUMNS)
    return f"""
        INSERT INTO residents AS r ({columns})
        SELECT {columns} FROM import_staging
        ON CONFLICT (id_number) DO UPDATE SET {sets}, categories = EXCLUDED.categories,
            ability_level = COALESCE(EXCLUDED.ability_level, r.ability_level), status = EXCLUDED.status,
            home_lat = COALESCE(EXCLUDED.home_lat, r.home_lat), home_lon = COALESCE(EXCLUDED.home_lon, r.home_lon),
            date_of_death = CASE WHEN EXCLUDED.status = 'deceased' THEN r.date_of_death END,
            family_doctor_contract = EXCLUDED.family_doctor_contract,
            family_doctor_signed_on = EXCLUDED.family_doctor_signed_on,
            version = r.version + 1, updated_at = now()
        -- Never across counties, even if another county registered the number a moment ago.
        WHERE r.county_code = EXCLUDED.county_code AND (
            ({old}) IS DISTINCT FROM ({new})
            OR NOT (r.categories @> EXCLUDED.categories AND r.categories <@ EXCLUDED.categories)
            OR (EXCLUDED.ability_level IS NOT NULL
                AND EXCLUDED.ability_level IS DISTINCT FROM r.ability_level)
            OR (EXCLUDED.home_lat IS NOT NULL
                AND (EXCLUDED.home_lat, EXCLUDED.home_lon) IS DISTINCT FROM (r.home_lat, r.home_lon))
            OR r.status IS DISTINCT FROM EXCLUDED.status
            OR (r.family_doctor_contract, r.family_doctor_signed_on)
                IS DISTINCT FROM (EXCLUDED.family_doctor_contract, EXCLUDED.family_doctor_signed_on))
        RETURNING r.id, r.id_number, (r.xmax = 0) AS inserted, r.ability_level, r.status, r.family_bed,
            r.version, r.home_lat, r.home_lon, r.family_doctor_contract, r.family_doctor_signed_on
    """


_UPSERT = upsert_sql()


def resident_record(rec: tuple) -> tuple:
    """A staged row as the residents table's RESIDENT_COLUMNS (status given, or active; no contract
    unless given)."""
    return rec[ID:STATUS] + (rec[STATUS] or "active", bool(rec[CONTRACT]), rec[SIGNED_ON])


def changed_fields(old: asyncpg.Record | dict, staged: tuple) -> list[str]:
    """The fields an import changes in an existing record, by the same rules as upsert_sql's WHERE
    (an empty ability level, home location or status is no change)."""
    changed = [c for c in _COMPARED if old[c] != staged[_STAGED_INDEX[c]]]
    if set(old["categories"] or ()) != set(staged[CATEGORIES]):
        changed.append("categories")
    if staged[LEVEL] is not None and staged[LEVEL] != old["ability_level"]:
        changed.append("ability_level")
    if staged[STATUS] is not None and staged[STATUS] != old["status"]:
        changed.append("status")
    if staged[CONTRACT] is not None:
        contract, signed_on = family_doctor_kept(staged, old)
        changed += [c for c, new in (("family_doctor_contract", contract), ("family_doctor_signed_on", signed_on))
                    if old[c] != new]
    if staged[HOME_LAT] is not None:
        changed += [f for f, i in (("home_lat", HOME_LAT), ("home_lon", HOME_LON)) if staged[i] != old[f]]
    return sorted(changed)


def family_doctor_kept(staged: tuple, old) -> tuple[bool, date | None]:
    """The contract and date a staged row leaves a resident with: an empty contract keeps the recorded
    one and its date; a contract without a date keeps the recorded date (a file that lists who has
    signed never wipes the dates it does not carry); no contract has no date."""
    contract, signed_on = staged[CONTRACT], staged[SIGNED_ON]
    recorded = (old["family_doctor_contract"], old["family_doctor_signed_on"]) if old is not None else (False, None)
    if contract is None:
        return recorded
    if contract and signed_on is None and recorded[0]:
        return True, recorded[1]
    return contract, signed_on


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def random_uuids(n: int) -> list[str]:
    """`n` random (version 4) UUIDs as text from one read of the OS's random source: a fifth of the cost
    of str(uuid.uuid4()) each, which was half the cost of building an event."""
    h = os.urandom(16 * n).hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-{_VARIANT[h[i + 16]]}{h[i + 17:i + 20]}-"
            f"{h[i + 20:i + 32]}" for i in range(0, 32 * n, 32)]


def uuid_stream(batch: int = 4096, draw: Callable[[int], list[str]] = time_ordered_uuids) -> Callable[[], str]:
    """A callable giving a fresh UUID per call, drawn in batches (time-ordered unless told otherwise)."""
    pool: list[str] = []

    def next_id() -> str:
        if not pool:
            pool.extend(reversed(draw(batch)))
        return pool.pop()

    return next_id


_RESIDENT = fields_of(ResidentSnapshot)
_DATA = {REGISTERED: fields_of(ResidentRegistered), UPDATED: fields_of(ResidentUpdated)}


def event_payload(event_type: str, event_id: str, resident_id: str, staged: tuple, *, ability_level,
                  status: str, family_bed: bool, version: int, time: str, traceparent: str | None,
                  changed: list[str] | None = None, home: tuple | None = None,
                  family_doctor: tuple[bool, date | None] | None = None) -> bytes:
    """A registered/updated CloudEvent as JSON: what `make_event(...).to_json()` gives for
    `ResidentRegistered`/`ResidentUpdated`, without building the models (the rows are checked).
    `home`: the stored location after an update (an import without one keeps it), else the row's;
    `family_doctor` is the stored contract and date (by default the staged ones)."""
    home_lat, home_lon = home if home is not None else (staged[HOME_LAT], staged[HOME_LON])
    contract, signed_on = family_doctor or (bool(staged[CONTRACT]), staged[SIGNED_ON])
    resident = _RESIDENT(
        resident_id=resident_id, county_code=staged[COUNTY], name=staged[NAME], birth_date=staged[BIRTH_DATE],
        gender=staged[GENDER], township=staged[TOWNSHIP], village=staged[VILLAGE],
        living_arrangement=staged[LIVING], categories=staged[CATEGORIES], ability_level=ability_level,
        status=status, family_bed=family_bed, version=version, home_lat=home_lat, home_lon=home_lon,
        family_doctor_contract=contract, family_doctor_signed_on=signed_on)
    data = _DATA[event_type](resident=resident) if changed is None else \
        _DATA[event_type](resident=resident, changed=changed)
    return fast_event_json(id=event_id, source=SOURCE, type=event_type, subject=resident_id, time=time,
                           data=data, countycode=staged[COUNTY], traceparent=traceparent)


_NULL = "\\N"
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")


def _copy_escape(value: str | None) -> str:
    if value is None:
        return _NULL
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_text(records: list[tuple]) -> bytes:
    """Staged rows as PostgreSQL COPY text for RESIDENT_COLUMNS. Only the free-text fields can hold a
    character COPY must escape; every other value is a code, a number or a date the checks produced."""
    lines = []
    for (_, rid, idn, name, phone, county, township, village, address, living, categories, level, contact,
         emergency_phone, home_lat, home_lon, birth, gender, status, contract, signed_on) in records:
        if _COPY_SPECIAL.search(f"{name}{township}{village}{address}{contact}"):
            name, township, village = _copy_escape(name), _copy_escape(township), _copy_escape(village)
            address, contact = _copy_escape(address), _copy_escape(contact)
        lines.append("\t".join((
            rid, idn, name, phone or _NULL, county, township, village, address or _NULL, living,
            "{" + ",".join(categories) + "}", _NULL if level is None else str(level), contact or _NULL,
            emergency_phone or _NULL, _NULL if home_lat is None else repr(home_lat),
            _NULL if home_lon is None else repr(home_lon), birth.isoformat(), gender, status or "active",
            "t" if contract else "f", _NULL if signed_on is None else signed_on.isoformat())))
    lines.append("")
    return "\n".join(lines).encode()


def prepare_inserts(chunk: PreparedChunk, traceparent: str | None) -> PreparedChunk:
    """Do in the reader thread what a chunk of new residents needs besides the database."""
    chunk.copy_text = copy_text(chunk.records)
    chunk.registered = registered_rows(chunk.records, _utc_stamp(), traceparent)
    return chunk


def registered_rows(records: list[tuple], time: str, traceparent: str | None) -> list[tuple]:
    """Outbox rows of `eldercare.resident.registered.v1` for newly registered staged rows."""
    event_ids = random_uuids(len(records))
    return [(event_id, TOPIC, rec[ID], event_payload(
        REGISTERED, event_id, rec[ID], rec, ability_level=rec[LEVEL], status=rec[STATUS] or "active",
        family_bed=False, version=1, time=time, traceparent=traceparent), None)
        for event_id, rec in zip(event_ids, records)]


@dataclass
class ChunkCounts:
    processed: int = 0
    accepted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    def add(self, other: "ChunkCounts") -> None:
        for name in ("processed", "accepted", "updated", "unchanged", "rejected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {"processed": self.processed, "accepted": self.accepted, "updated": self.updated,
                "unchanged": self.unchanged, "rejected": self.rejected}


def _utc_stamp() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


async def write_chunk(conn: asyncpg.Connection, job_id: uuid.UUID, chunk: PreparedChunk, *,
                      id_column: str = "id_number", traceparent: str | None = None) -> ChunkCounts:
    """One chunk in one transaction: residents, their events, the chunk's errors and the job's counters."""
    counts = ChunkCounts(processed=chunk.processed, rejected=chunk.rejected)
    errors = list(chunk.errors)
    async with conn.transaction():
        if chunk.records:
            outbox = await _write_residents(conn, chunk, counts, errors, id_column=id_column,
                                            traceparent=traceparent)
            await add_rows(conn, outbox)
        if errors:
            await conn.copy_records_to_table(
                "import_errors", columns=("job_id", "row_no", "column_name", "value", "message"),
                records=[(job_id, *error) for error in errors])
        await conn.execute(
            "UPDATE import_jobs SET processed = processed + $2, accepted = accepted + $3, "
            "updated = updated + $4, unchanged = unchanged + $5, rejected = rejected + $6, "
            "total_rows = GREATEST(total_rows, processed + $2) WHERE id = $1",
            job_id, counts.processed, counts.accepted, counts.updated, counts.unchanged, counts.rejected)
    return counts


async def _copy_new(conn: asyncpg.Connection, chunk: PreparedChunk, rows: list[tuple]) -> bool:
    """COPY rows straight into residents, all or none (a savepoint); False if one's ID number is taken."""
    try:
        async with conn.transaction():
            if rows is chunk.records and chunk.copy_text is not None:
                await conn.copy_to_table("residents", source=io.BytesIO(chunk.copy_text),
                                         columns=RESIDENT_COLUMNS, format="text")
            else:
                await conn.copy_records_to_table("residents", records=[resident_record(rec) for rec in rows],
                                                 columns=RESIDENT_COLUMNS)
    except asyncpg.UniqueViolationError:
        return False
    return True


async def _write_residents(conn: asyncpg.Connection, chunk: PreparedChunk, counts: ChunkCounts, errors: list,
                           *, id_column: str, traceparent: str | None) -> list[tuple]:
    """Register, update or leave alone the chunk's residents; returns their events as outbox rows.

    First bet that every row is new (a first import): COPY them straight into residents. If one ID number
    is registered already, the savepoint drops the COPY and the chunk is sorted out: numbers another county
    holds are rejected; residents of this county go through staging and the upsert when anything differs
    and are left alone when nothing does; the rest are new and COPied. Should another writer register one
    of those meanwhile, they take the upsert too (which never crosses counties).
    """
    records = chunk.records
    stamp = _utc_stamp()
    if await _copy_new(conn, chunk, records):
        counts.accepted += len(records)
        if chunk.registered is not None:
            return chunk.registered
        return registered_rows(records, stamp, traceparent)

    by_number = {rec[ID_NUMBER]: rec for rec in records}
    old_by_number: dict[str, asyncpg.Record] = {}
    to_upsert: list[tuple] = []
    for old in await conn.fetch(_EXISTING, list(by_number)):
        rec = by_number.pop(old["id_number"])
        if old["county_code"] != rec[COUNTY]:
            errors.append(_moved_error(rec, old["county_code"], id_column))
            counts.rejected += 1
        elif changed_fields(old, rec):
            old_by_number[old["id_number"]] = old
            to_upsert.append(rec)
        else:
            counts.unchanged += 1
    outbox: list[tuple] = []
    new = list(by_number.values())
    if new:
        if await _copy_new(conn, chunk, new):
            counts.accepted += len(new)
            if chunk.registered is None:
                outbox.extend(registered_rows(new, stamp, traceparent))
            else:
                fresh = {rec[ID] for rec in new}
                outbox.extend(row for row in chunk.registered if row[2] in fresh)
        else:
            to_upsert.extend(new)
    if to_upsert:
        await _upsert(conn, to_upsert, old_by_number, counts, errors, outbox, id_column=id_column,
                      stamp=stamp, traceparent=traceparent)
    return outbox


async def _upsert(conn: asyncpg.Connection, rows: list[tuple], old_by_number: dict, counts: ChunkCounts,
                  errors: list, outbox: list, *, id_column: str, stamp: str, traceparent: str | None) -> None:
    # A status left empty is the resident's current one (a new resident's is active), and so is an
    # empty family-doctor contract with its date (a new resident has none).
    rows = [_filled(rec, old_by_number.get(rec[ID_NUMBER])) for rec in rows]
    await conn.execute(_STAGING_DDL)
    await conn.copy_records_to_table("import_staging", records=rows, columns=STAGED_COLUMNS)
    returned = await conn.fetch(_UPSERT)
    by_number = {rec[ID_NUMBER]: rec for rec in rows}
    event_ids = random_uuids(len(returned))
    for event_id, row in zip(event_ids, returned):
        rid = str(row["id"])
        rec = by_number.pop(row["id_number"])
        if row["inserted"]:
            counts.accepted += 1
            event_type, changed = REGISTERED, None
        else:
            counts.updated += 1
            old = old_by_number.get(row["id_number"])
            event_type, changed = UPDATED, changed_fields(old, rec) if old is not None else []
        outbox.append((event_id, TOPIC, rid, event_payload(
            event_type, event_id, rid, rec, ability_level=row["ability_level"], status=row["status"],
            family_bed=row["family_bed"], version=row["version"], time=stamp, traceparent=traceparent,
            changed=changed, home=(row["home_lat"], row["home_lon"]),
            family_doctor=(row["family_doctor_contract"], row["family_doctor_signed_on"])), None))
    if by_number:
        # Not inserted, not updated: the same record, or (a race) a number another county now holds.
        for owner in await conn.fetch(_OWNERS, list(by_number)):
            rec = by_number[owner["id_number"]]
            if owner["county_code"] != rec[COUNTY]:
                errors.append(_moved_error(rec, owner["county_code"], id_column))
                counts.rejected += 1
            else:
                counts.unchanged += 1


def _filled(rec: tuple, old) -> tuple:
    status = rec[STATUS] if rec[STATUS] is not None else (old["status"] if old is not None else "active")
    return rec[:STATUS] + (status, *family_doctor_kept(rec, old))


def _moved_error(rec: tuple, owner: str, id_column: str) -> RowError:
    masked = mask_id_number(rec[ID_NUMBER]) or ""
    return (rec[ROW_NO], id_column, masked, other_county_message(masked, owner))


# ---------------------------------------------------------------- jobs ----------------------


@contextmanager
def bulk_gc(young: int = 50_000) -> Iterator[None]:
    """Collect the young generation every `young` allocations instead of every 700 while importing.
    A chunk allocates hundreds of thousands of short-lived containers; at CPython's default the
    cyclic collector runs thousands of times per chunk for nothing (measured: a third of the
    validation time). Process-wide, restored afterwards; imports run one at a time per process."""
    threshold = gc.get_threshold()
    gc.set_threshold(max(young, threshold[0]), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


def import_dir(state_dir: Path) -> Path:
    path = Path(state_dir) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _lock_key(job_id: uuid.UUID) -> str:
    return f"registry-import:{job_id}"


async def create_job(conn: asyncpg.Connection, *, actor: str, county_code: str | None, filename: str | None,
                     sha256: str, total_rows: int = 0) -> uuid.UUID:
    job_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO import_jobs (id, county_code, actor, filename, file_sha256, total_rows) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        job_id, county_code, actor, filename, sha256, total_rows)
    return job_id


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


ProgressCallback = Callable[[dict], object]


async def run_import(conn: asyncpg.Connection, job_id: uuid.UUID, path: Path, *, scope_county: str | None,
                     known_counties: Collection[str] | None = None, chunk_rows: int = CHUNK_ROWS,
                     today: date | None = None, on_progress: ProgressCallback | None = None,
                     locked: bool = False) -> dict:
    """Import one queued job's file on `conn` (search_path: the registry schema). Returns the job's final
    counters and status; a file-level problem fails the job with a clerk-readable `error`, never raises.
    The job's advisory lock is held throughout (taken here unless the caller holds it: `locked`), so
    `recover_interrupted_imports` in another process leaves a live import alone."""
    from services.registry.handlers import today_local

    if not locked and not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                                              _lock_key(job_id)):
        raise RuntimeError(f"import job {job_id} is already running elsewhere")
    totals = ChunkCounts()
    imported: ImportFile | None = None
    try:
        started = await conn.fetchval(
            "UPDATE import_jobs SET status = 'running' WHERE id = $1 AND status = 'queued' RETURNING id",
            job_id)
        if started is None:
            return await _job_outcome(conn, job_id)
        try:
            imported = await asyncio.to_thread(ImportFile, path)
        except ImportFileError as exc:
            return await _finish(conn, job_id, "failed", exc.message)
        except OSError as exc:
            return await _finish(conn, job_id, "failed", f"无法读取上传的文件 / cannot read the upload: {exc}")
        await _record_header(conn, job_id, imported)
        checker = RowChecker(imported.headers, known_counties or frozenset(load_counties()), scope_county,
                             today or today_local(), new_id=uuid_stream())
        traceparent = current_traceparent()
        chunks = (prepare_inserts(chunk, traceparent) for chunk in imported.chunks(checker, chunk_rows))
        pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
        try:
            with bulk_gc():
                while True:
                    chunk = await pending
                    if chunk is None:
                        break
                    # Read and check the next chunk while PostgreSQL writes this one.
                    pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
                    totals.add(await write_chunk(conn, job_id, chunk, traceparent=traceparent,
                                                 id_column=imported.headers.column("id_number")))
                    if on_progress is not None:
                        total = max(imported.estimated_rows, totals.processed)
                        on_progress({**totals.as_dict(), "total_rows": total})
        except ImportFileError as exc:
            return await _finish(conn, job_id, "failed", exc.message)
        finally:
            # The reader thread cannot be interrupted: let it finish its chunk before the file closes.
            await asyncio.gather(pending, return_exceptions=True)
        return await _finish(conn, job_id, "succeeded", None)
    except asyncio.CancelledError:
        await asyncio.shield(_finish_quietly(conn, job_id, _interrupted_message(totals.processed)))
        raise
    except Exception:
        log.exception("import job failed", extra={"fields": {"job_id": str(job_id)}})
        return await _finish(conn, job_id, "failed",
                             f"导入时发生内部错误,已记录;已处理的 {totals.processed:,} 行已保存,可重新导入同一文件继续 / "
                             f"internal error (logged); the {totals.processed:,} rows processed are saved, "
                             "import the same file again to finish")
    finally:
        if imported is not None:
            imported.close()
        if not locked:
            await _unlock(conn, job_id)


async def _record_header(conn: asyncpg.Connection, job_id: uuid.UUID, imported: ImportFile) -> None:
    # Header warnings are import_errors rows on the header's row with no value (a row error always has one).
    warnings = header_warnings(imported.headers)
    texts = list(imported.headers.unknown) + list(imported.headers.repeated)
    if warnings:
        # A header is typed text like any cell: a number in it is masked the same way.
        await conn.executemany(
            "INSERT INTO import_errors (job_id, row_no, column_name, value, message) "
            "VALUES ($1, $2, $3, NULL, $4)",
            [(job_id, imported.header_row, mask_personal(column)[:200], mask_personal(message))
             for column, message in zip(texts, warnings)])
    await conn.execute("UPDATE import_jobs SET total_rows = $2 WHERE id = $1", job_id,
                       imported.estimated_rows)


def _interrupted_message(processed: int) -> str:
    return (f"导入被中断(服务停止或重启);已处理的 {processed:,} 行已保存,重新导入同一文件即可继续,已导入的行不会重复 / "
            f"the import was interrupted (the service stopped); the {processed:,} rows processed are saved — "
            "import the same file again to finish, rows already imported stay unchanged")


async def _finish(conn: asyncpg.Connection, job_id: uuid.UUID, status: str, error: str | None) -> dict:
    await conn.execute(
        "UPDATE import_jobs SET status = $2, error = $3, finished_at = now(), "
        "total_rows = CASE WHEN $2 = 'succeeded' THEN processed ELSE GREATEST(total_rows, processed) END "
        "WHERE id = $1", job_id, status, error)
    return await _job_outcome(conn, job_id)


async def _finish_quietly(conn: asyncpg.Connection, job_id: uuid.UUID, error: str) -> None:
    try:
        await asyncio.wait_for(conn.execute(
            "UPDATE import_jobs SET status = 'failed', error = $2, finished_at = now() "
            "WHERE id = $1 AND status IN ('queued', 'running')", job_id, error), 5)
    except Exception:  # noqa: BLE001 - the startup recovery marks it instead
        log.warning("could not mark an interrupted import as failed",
                    extra={"fields": {"job_id": str(job_id)}})


async def _unlock(conn: asyncpg.Connection, job_id: uuid.UUID) -> None:
    try:
        await asyncio.shield(conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                                          _lock_key(job_id)))
    except Exception:  # noqa: BLE001 - a closed connection has released its locks
        pass


async def _job_outcome(conn: asyncpg.Connection, job_id: uuid.UUID) -> dict:
    row = await conn.fetchrow(
        "SELECT status, total_rows, processed, accepted, updated, unchanged, rejected, error "
        "FROM import_jobs WHERE id = $1", job_id)
    return dict(row) | {"job_id": str(job_id)}


# ---------------------------------------------------------------- in the service -----------

# Strong references to running imports (asyncio keeps only weak ones), per process.
_TASKS: set[asyncio.Task] = set()
_SLOTS: asyncio.Semaphore | None = None


def _slots() -> asyncio.Semaphore:
    global _SLOTS
    if _SLOTS is None:
        _SLOTS = asyncio.Semaphore(1)
    return _SLOTS


def check_capacity() -> None:
    """Refuse a new upload while this process already has its fill of imports waiting or running."""
    if sum(1 for t in _TASKS if not t.done()) >= MAX_JOBS_PER_PROCESS:
        raise ImportsBusy(f"已有 {MAX_JOBS_PER_PROCESS} 个导入在排队或进行中,请稍后再试 / "
                          f"{MAX_JOBS_PER_PROCESS} imports are already queued or running; try again later")


def start_import(runtime, job_id: uuid.UUID, path: Path, *, scope_county: str | None) -> asyncio.Task:
    """Run a queued job as a task of the registry process; the runtime cancels it on shutdown."""
    task = asyncio.create_task(_run_in_service(runtime, job_id, Path(path), scope_county),
                               name=f"registry-import-{job_id}")
    _TASKS.add(task)
    runtime.tasks.append(task)

    def forget(done: asyncio.Task) -> None:
        _TASKS.discard(done)
        if done in runtime.tasks:
            runtime.tasks.remove(done)

    task.add_done_callback(forget)
    return task


async def _import_holding_lock(conn: asyncpg.Connection, job_id: uuid.UUID, path: Path,
                               scope_county: str | None) -> None:
    # Hold the job's lock while queued too, so another replica's start-up leaves it alone.
    await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", _lock_key(job_id))
    try:
        async with _slots():
            outcome = await run_import(conn, job_id, path, scope_county=scope_county, locked=True)
    except asyncio.CancelledError:
        # Stopped while still queued (a running import has marked itself already).
        await asyncio.shield(_finish_quietly(conn, job_id, _interrupted_message(0)))
        raise
    finally:
        await _unlock(conn, job_id)
    log.info("import finished", extra={"fields": {k: outcome[k] for k in (
        "job_id", "status", "processed", "accepted", "updated", "unchanged", "rejected")}})
    if outcome["accepted"] + outcome["updated"] >= VACUUM_AFTER_ROWS:
        await refresh_visibility(conn)


async def _run_in_service(runtime, job_id: uuid.UUID, path: Path, scope_county: str | None) -> None:
    try:
        async with runtime.db.pool.acquire() as conn:
            # An import is bounded by its file's checks, not by the API's statement timeout (a chunk's
            # upsert, the VACUUM after); the connection gets its default back before the pool does.
            await conn.execute("SET statement_timeout = 0")
            try:
                await _import_holding_lock(conn, job_id, path, scope_county)
            finally:
                try:
                    await asyncio.shield(conn.execute("RESET statement_timeout"))
                except Exception:  # noqa: BLE001 - a broken connection is not returned as it is
                    conn.terminate()
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - a task's exception would otherwise be lost
        log.exception("import task failed", extra={"fields": {"job_id": str(job_id)}})
    finally:
        path.unlink(missing_ok=True)  # personal data: the upload is not kept once imported


async def refresh_visibility(conn: asyncpg.Connection) -> None:
    """VACUUM (ANALYZE) the residents table after a large import: searches answer from the covering
    index only for pages the visibility map marks all-visible, and the planner needs the new
    statistics. The job has already finished; this only makes the reads that follow fast."""
    try:
        await conn.execute("VACUUM (ANALYZE) residents")
    except asyncpg.PostgresError as exc:  # autovacuum will get there too; never fail the import
        log.warning("vacuum after import failed", extra={"fields": {"error": str(exc)}})


async def recover_interrupted_imports(runtime) -> int:
    """Mark jobs left queued or running by a process that died as failed (call from the app's on_start).
    A job whose advisory lock is still held belongs to a live process (another replica, `eldercare seed`)
    and is left alone. Returns how many were marked."""
    marked = 0
    async with runtime.db.pool.acquire() as conn:
        jobs = await conn.fetch("SELECT id, processed FROM import_jobs WHERE status IN ('queued', 'running')")
        for job in jobs:
            key = _lock_key(job["id"])
            if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key):
                continue
            try:
                done = await conn.execute(
                    "UPDATE import_jobs SET status = 'failed', error = $2, finished_at = now() "
                    "WHERE id = $1 AND status IN ('queued', 'running')",
                    job["id"], _interrupted_message(job["processed"]))
                marked += done.endswith(" 1")
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
            for leftover in import_dir(runtime.settings.eldercare_state_dir).glob(f"{job['id']}.*"):
                leftover.unlink(missing_ok=True)
    if marked:
        log.warning("marked interrupted imports as failed", extra={"fields": {"jobs": marked}})
    return marked


# ---------------------------------------------------------------- uploads -------------------


@dataclass
class UploadSink:
    """Where an upload streams to: a file under the state folder, its SHA-256 and its line count
    (a CSV's row count before it is parsed, for the 1,000,000-row limit and the progress bar)."""

    path: Path
    size: int = 0
    lines: int = 0
    head: bytes = b""
    _last: bytes = b"\n"
    _digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)

    def __post_init__(self) -> None:
        self._fh = self.path.open("wb")

    def write(self, data: bytes) -> None:
        if not data:
            return
        if len(self.head) < 8:
            self.head += data[: 8 - len(self.head)]
        self._fh.write(data)
        self._digest.update(data)
        self.size += len(data)
        self.lines += data.count(b"\n")
        self._last = data[-1:]

    def close(self) -> None:
        self._fh.close()

    def discard(self) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    @property
    def kind(self) -> str:
        return detect_kind(self.head)

    @property
    def data_lines(self) -> int:
        """Lines after the header (a CSV's rows, unless a cell holds a line break)."""
        total = self.lines + (0 if self._last == b"\n" else 1)
        return max(0, total - 1)
