"""Bounds an uploaded XLSX must keep before any reader loads it.

calamine (the fast reader the importer uses) builds a worksheet as one dense range from its top-left
to its bottom-right cell: a 2 KB file with cells at A1 and XFD1048576 asks for 17 billion cells
(512 GB) and the allocation failure aborts the process. A zip bomb does the same with shared
strings. So before calamine sees a file, this module reads it once as a stream, in bounded memory:

- the zip: at most MAX_ZIP_ENTRIES parts, only stored or deflated, no part name twice, declared
  sizes within MAX_UNCOMPRESSED_BYTES in all, no large part compressed beyond MAX_RATIO; every part
  is inflated here (output discarded) and must come out exactly at its declared size, so a part
  that lies about its size is refused rather than trusted;
- each worksheet: its `<dimension>` and the cells' own references bound the range calamine would
  allocate (rows within MAX_SHEET_ROWS, columns within MAX_COLUMNS, rows x columns within
  MAX_SHEET_CELLS). Cells written the usual way (`<c r="B7" ...>`, every writer we know) are
  bounded by a few regular-expression scans; a sheet with cells without a reference, or written
  otherwise, is walked tag by tag exactly as calamine counts positions (slower, but bounded too).

Every refusal is an ImportFileError with a message a county clerk can act on, Chinese first.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from services.registry.domain.imports import (
    MAX_COLUMNS, MAX_RATIO, MAX_SHEET_CELLS, MAX_SHEET_ROWS, MAX_UNCOMPRESSED_BYTES, MAX_ZIP_ENTRIES,
    ImportFileError, column_number, sheet_too_large_message, zip_refused_message,
)

_BLOCK = 1 << 20
# Carried between blocks: an unfinished tag (a real one is a few hundred bytes).
_TAIL_MAX = 64 * 1024
# Parts this large must not be compressed beyond MAX_RATIO (XML of real sheets compresses 5-20x).
_RATIO_FROM_BYTES = 8 << 20

_DIMENSION = re.compile(rb'<(?:[\w.-]+:)?dimension\s[^>]*?ref\s*=\s*["\']([A-Za-z]{1,4})?(\d+)?'
                        rb'(?::([A-Za-z]{1,4})(\d+))?')
# The references that can push a range beyond the bounds: a column of three letters, of two, from R
# to Z, or a row of seven digits and more (17 columns of MAX_SHEET_ROWS are within MAX_SHEET_CELLS).
# A sheet of the template (A to Q, < 1M rows) has none.
_RARE_REF = re.compile(rb'<c r="(?:([A-Za-z]{2,3}|[R-Zr-z])([0-9]+)|[A-Za-z]([0-9]{7,}))')
_ROWS_6 = re.compile(rb'<c r="[A-Za-z]{1,3}([0-9]{6})"')
# Cells written any other way (no attribute, a tab or line break after the name, a namespace prefix).
_ODD_CELL = re.compile(rb'<c[\t\r\n/>]')
_PREFIXED = re.compile(rb':c[\s/>]')
_TAG = re.compile(rb'<(?:[\w.-]+:)?(row|c)(?=[\s/>])([^>]*)>')
_R_ATTR = re.compile(rb'(?:^|\s)r\s*=\s*["\']([^"\']*)["\']')
_REF = re.compile(rb'^\$?([A-Za-z]{1,4})\$?([0-9]{1,9})$')


def check_xlsx(path: Path) -> None:
    """Refuse (ImportFileError) a workbook whose parts or sheets exceed the bounds; else return."""
    try:
        book = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ImportFileError(zip_refused_message("unreadable")) from None
    with book, Path(path).open("rb") as raw:
        infos = book.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise ImportFileError(zip_refused_message("entries", len(infos)))
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise ImportFileError(zip_refused_message("duplicate"))
        declared = sum(i.file_size for i in infos)
        if declared > MAX_UNCOMPRESSED_BYTES:
            raise ImportFileError(zip_refused_message("size", declared))
        for info in infos:
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ImportFileError(zip_refused_message("method"))
            if info.file_size > _RATIO_FROM_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise ImportFileError(zip_refused_message("ratio", info.file_size))
        for info in infos:
            blocks = _inflate(raw, info)
            if info.filename.lower().endswith(".xml"):
                _check_part(info.filename, blocks, lambda: _inflate(raw, info))
            else:
                for _ in blocks:
                    pass


def _inflate(raw, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A part's true content in blocks, never more than its declared size (else refused)."""
    raw.seek(info.header_offset)
    header = raw.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise ImportFileError(zip_refused_message("unreadable"))
    start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    raw.seek(start)
    left_in, produced = info.compress_size, 0
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if info.compress_type == zipfile.ZIP_DEFLATED else None
    pending = b""
    while left_in > 0 or pending:
        if not pending:
            pending = raw.read(min(_BLOCK, left_in))
            if not pending:
                raise ImportFileError(zip_refused_message("unreadable"))
            left_in -= len(pending)
        if inflater is None:
            out, pending = pending, b""
        else:
            try:
                # Bounded output per call: a bomb never expands in memory beyond one block.
                out = inflater.decompress(pending, _BLOCK)
            except zlib.error:
                raise ImportFileError(zip_refused_message("unreadable")) from None
            pending = inflater.unconsumed_tail
        produced += len(out)
        if produced > info.file_size:
            raise ImportFileError(zip_refused_message("lies"))
        if out:
            yield out
        if inflater is not None and inflater.eof:
            break
    if produced != info.file_size or (inflater is not None and not inflater.eof):
        raise ImportFileError(zip_refused_message("lies"))


def _check_part(name: str, blocks: Iterator[bytes], again) -> None:
    """Bound a worksheet part's extent (other XML parts are only inflated to the end)."""
    head = b""
    for block in blocks:
        head += block
        if len(head) >= 65536:
            break
    if b"sheetData" not in head and b"worksheet" not in head:
        for _ in blocks:
            pass
        return
    _check_dimension(name, head)
    scan = _FastScan()
    scan.feed(head)
    for block in blocks:
        scan.feed(block)
    scan.finish()
    if scan.exact_needed:
        rows, columns = _exact_extent(again())
    else:
        rows, columns = scan.rows, scan.columns
        if columns > 17 and rows <= MAX_SHEET_ROWS:
            # Only a wide sheet can exceed the cell budget below a million rows: then its six-digit
            # rows count too (a second pass, for wide sheets only).
            rows = max(rows, _six_digit_rows(again()))
    _check_extent(name, rows, columns)


def _six_digit_rows(blocks: Iterator[bytes]) -> int:
    best = b""
    tail = b""
    for block in blocks:
        data = tail + block
        cut = data.rfind(b"<")
        data, tail = (data[:cut], data[cut:]) if cut > 0 else (data, b"") if len(data) > _TAIL_MAX else (b"", data)
        found = _ROWS_6.findall(data)
        if found:
            best = max(best, max(found))  # equal-length digit strings compare like their numbers
    found = _ROWS_6.findall(tail)
    if found:
        best = max(best, max(found))
    return int(best) if best else 1


def _check_dimension(name: str, head: bytes) -> None:
    match = _DIMENSION.search(head)
    if not match:
        return
    col = match.group(3) or match.group(1)
    row = match.group(4) or match.group(2)
    if col and row:
        _check_extent(name, int(row), column_number(col.decode()))


def _check_extent(name: str, rows: int, columns: int) -> None:
    if rows > MAX_SHEET_ROWS or columns > MAX_COLUMNS or rows * columns > MAX_SHEET_CELLS:
        raise ImportFileError(sheet_too_large_message(rows, columns))


class _FastScan:
    """The extent of a sheet whose cells all start `<c r="..."` (what Excel, WPS, openpyxl and
    xlsxwriter write): a few scans for the rare references that matter, no per-cell Python work.
    Rows are bounded here only from a million up (a narrow sheet below that is within budget)."""

    def __init__(self) -> None:
        self._tail = b""
        self.exact_needed = False
        self.columns = 1
        self.rows = 1

    def feed(self, block: bytes) -> None:
        data = self._tail + block
        cut = data.rfind(b"<")
        if cut <= 0:
            # No tag starts after the first byte: a long text. The patterns are short prefixes, so
            # scanning it now loses nothing, and the tail never grows with the text.
            if len(data) > _TAIL_MAX:
                self._scan(data)
                data = b""
            self._tail = data
            return
        # Cut before the last tag start, so every tag scanned is whole.
        data, self._tail = data[:cut], data[cut:]
        self._scan(data)

    def finish(self) -> None:
        if self._tail:
            self._scan(self._tail)
            self._tail = b""

    def _scan(self, data: bytes) -> None:
        if self.exact_needed:
            return
        if (data.count(b"<c ") != data.count(b'<c r="') or _ODD_CELL.search(data) or _PREFIXED.search(data)):
            self.exact_needed = True
            return
        for letters, digits, big_row in _RARE_REF.findall(data):
            if letters:
                self.columns = max(self.columns, column_number(letters.decode()))
                if len(digits) >= 7:
                    self.rows = max(self.rows, int(digits))
            else:
                self.rows = max(self.rows, int(big_row))


def _exact_extent(blocks: Iterator[bytes]) -> tuple[int, int]:
    """Rows and columns as calamine positions cells: a cell's own reference, else the next column
    of its row; a row's own number, else the next row."""
    row = -1
    col = 0
    max_row = max_col = 0
    tail = b""
    for block in blocks:
        data = tail + block
        cut = data.rfind(b"<")
        if cut <= 0 and len(data) > _TAIL_MAX and data.find(b">") < 0:
            raise ImportFileError(zip_refused_message("unreadable"))  # a tag longer than 64 KB
        data, tail = (data[:cut], data[cut:]) if cut > 0 else (data, b"") if len(data) > _TAIL_MAX else (b"", data)
        for match in _TAG.finditer(data):
            kind, attrs = match.group(1), match.group(2)
            ref = _R_ATTR.search(attrs)
            if kind == b"row":
                if ref and ref.group(1).isdigit():
                    row = int(ref.group(1)) - 1
                else:
                    row += 1
                col = 0
                continue
            if ref:
                parsed = _REF.match(ref.group(1).strip())
                if parsed is None:
                    raise ImportFileError(zip_refused_message("unreadable"))
                cell_row, cell_col = int(parsed.group(2)) - 1, column_number(parsed.group(1).decode()) - 1
            else:
                cell_row, cell_col = max(row, 0), col
            col = cell_col + 1
            max_row, max_col = max(max_row, cell_row + 1), max(max_col, cell_col + 1)
            if max_row > MAX_SHEET_ROWS or max_col > MAX_COLUMNS:
                return max_row, max_col
    return max(max_row, 1), max(max_col, 1)
