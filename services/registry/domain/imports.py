"""County spreadsheet imports (SPEC §2 "Resident fields and the county import template"): what a
file must look like, how a cell becomes a value, and what a county clerk reads when a row is wrong.
Pure: no I/O, unit-tested.

Validation is `validate_resident`'s. Rows are checked here by a fast path that takes only values
`validate_resident` certainly accepts and yields the same normalised record; anything else goes
through `validate_resident` itself, whose errors are reworded Chinese first, English after.
(A 700k-row import has to validate well above 40,000 rows/s; `validate_resident` alone does ~35k.)
"""

from __future__ import annotations

import codecs
import re
import unicodedata
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time

from services.registry.domain.residents import (
    CATEGORIES, FIELD_LABELS_ZH, family_doctor_problem, normalise_ability_level, normalise_categories,
    normalise_contract, normalise_coordinate, normalise_living_arrangement, normalise_phone, normalise_signed_on,
    validate_resident,
)
from shared.idcard import (
    CHECK_CHARACTERS, EARLIEST_BIRTH_YEAR, WEIGHTS, IdNumberError, mask_id_number, mask_phone,
    parse_id_number,
)
from shared.privacy import mask_personal
from shared.problems import DomainError
from shared.regions import PROVINCE_CODES

# The ceiling: one county's registry fits many times over (the largest has ~180k elders).
MAX_ROWS = 1_000_000
# Bounds checked before a file is loaded (a reader must never be asked for more memory than these
# allow; see services/registry/xlsx_guard.py). A 1,000,000-row sheet of the template's 17 columns is
# ~400 MB of XML and 17M cells; calamine holds 32 bytes a cell of the dense range (~0.55 GB here).
MAX_SHEET_ROWS = MAX_ROWS + 100        # a few title rows above the header
MAX_COLUMNS = 128                      # the template has 17; clerks add a few of their own
MAX_SHEET_CELLS = 18_000_000           # rows x columns of the range a reader allocates (17 x MAX_SHEET_ROWS fit)
MAX_UNCOMPRESSED_BYTES = 1 << 30       # all parts of an XLSX together, as inflated
MAX_RATIO = 200                        # real sheets compress 5-20x; a zip bomb 1000x and more
MAX_ZIP_ENTRIES = 10_000
# One CSV line (between line breaks, in bytes): a row of the template is ~200 bytes. Longer lines
# are refused before parsing, so no single line is ever read whole into memory.
MAX_CSV_LINE_BYTES = 64 * 1024
# Columns in template order; `status` is optional and not part of the JSON API's record, nor are the
# family-doctor columns after it required (an empty contract cell keeps the recorded contract).
IMPORT_FIELDS: tuple[str, ...] = tuple(FIELD_LABELS_ZH)
REQUIRED_FIELDS: tuple[str, ...] = ("name", "id_number", "county_code", "township", "village",
                                    "living_arrangement")
PERSONAL_COLUMNS = frozenset({"id_number", "phone", "emergency_phone"})
STATUS_WORDS: dict[str, str] = {
    "active": "active", "正常": "active", "在册": "active", "在世": "active",
    "deceased": "deceased", "死亡": "deceased", "已故": "deceased", "去世": "deceased", "已去世": "deceased",
    "transferred": "transferred", "迁出": "transferred", "已迁出": "transferred",
}
# Headers clerks commonly type for the template's columns, besides the template's own.
_HEADER_ALIASES: dict[str, str] = {
    "身份证号码": "id_number", "身份证": "id_number", "公民身份号码": "id_number",
    "手机号": "phone", "手机号码": "phone", "电话": "phone", "联系方式": "phone",
    "县区": "county_code", "县(区)代码": "county_code", "乡镇(街道)": "township", "村(社区)": "village",
    "地址": "address", "居住情况": "living_arrangement", "困难类别": "categories",
    "紧急联系人电话": "emergency_phone", "人员状态": "status",
    "家庭医生签约情况": "family_doctor_contract", "是否签约家庭医生": "family_doctor_contract",
    "家庭医生": "family_doctor_contract", "签约时间": "family_doctor_signed_on",
    "家庭医生签约日期": "family_doctor_signed_on",
    "纬度": "home_lat", "经度": "home_lon",
    "lat": "home_lat", "lon": "home_lon", "latitude": "home_lat", "longitude": "home_lon",
}
# Where the optional status column sits in template order (after the record's fields).
STATUS_INDEX = IMPORT_FIELDS.index("status")
RECORD_FIELDS = IMPORT_FIELDS[:STATUS_INDEX]


class ImportJobNotFound(DomainError):
    pass


class UnsupportedImportFile(DomainError):
    pass


class ImportsBusy(DomainError):
    """This process already has its fill of imports waiting or running; worth trying again later."""


class ImportFileError(Exception):
    """The whole file cannot be imported (unreadable, wrong columns, too many rows): the job fails
    with this message and no row is written."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------- the file ------------------


def detect_kind(head: bytes) -> str:
    """'xlsx' (a zip, as every Office Open XML file is), 'xls' (an OLE2 compound file) or 'csv'."""
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "xls"
    return "csv"


class EncodingSniffer:
    """Feed a CSV's bytes in order; `encoding` then says how to read it: UTF-8 (with or without
    BOM), UTF-16 with BOM (Excel's "Unicode text"), or else GB18030, which Chinese Windows Excel
    writes (a superset of GBK and GB2312)."""

    def __init__(self) -> None:
        self._head = b""
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._utf8_ok = True

    def feed(self, chunk: bytes) -> None:
        if len(self._head) < 4:
            self._head += chunk[:4]
        if self._utf8_ok:
            try:
                self._utf8.decode(chunk)
            except UnicodeDecodeError:
                self._utf8_ok = False

    @property
    def encoding(self) -> str:
        if self._head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if self._head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        if self._utf8_ok:
            try:
                self._utf8.decode(b"", final=True)
                return "utf-8"
            except UnicodeDecodeError:
                pass
        return "gb18030"


def sniff_encoding(data: bytes) -> str:
    sniffer = EncodingSniffer()
    sniffer.feed(data)
    return sniffer.encoding


def csv_delimiter(header_line: str) -> str:
    """Comma, or tab for Excel's "Unicode text" export (no comma on the header line, a tab)."""
    return "\t" if "\t" in header_line and "," not in header_line else ","


# ---------------------------------------------------------------- headers -------------------


def _header_key(text: object) -> str:
    # NFKC folds full-width letters and brackets typed with a Chinese input method; templates
    # often mark required columns with an asterisk.
    key = unicodedata.normalize("NFKC", str(text or "")).replace("\ufeff", "").strip().strip("*＊").strip()
    if key.isascii():
        key = re.sub(r"[\s\-]+", "_", key.lower())
    return key


_HEADER_FIELDS: dict[str, str] = (
    {f: f for f in IMPORT_FIELDS}
    | {_header_key(zh): f for f, zh in FIELD_LABELS_ZH.items()}
    | {_header_key(alias): f for alias, f in _HEADER_ALIASES.items()}
)


def field_of_header(text: object) -> str | None:
    """The field a column header names (English field name, the template's Chinese, a common
    variant, or any of them with a hint in brackets such as 身份证号(必填)), else None."""
    key = _header_key(text)
    found = _HEADER_FIELDS.get(key)
    if found is None and "(" in key:
        found = _HEADER_FIELDS.get(_header_key(key.split("(", 1)[0]))
    return found


@dataclass(frozen=True)
class HeaderMap:
    """Which column holds which field, as the file's header row says."""

    index: dict[str, int]           # field -> column index
    written: dict[str, str]         # field -> the header as written in the file
    unknown: tuple[str, ...] = ()   # headers naming no field (ignored)
    repeated: tuple[str, ...] = ()  # a second column for a field already mapped (ignored)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(f for f in REQUIRED_FIELDS if f not in self.index)

    def column(self, field_name: str) -> str:
        return self.written.get(field_name) or FIELD_LABELS_ZH.get(field_name, field_name)


def map_headers(cells: Sequence[object]) -> HeaderMap:
    index: dict[str, int] = {}
    written: dict[str, str] = {}
    unknown: list[str] = []
    repeated: list[str] = []
    for i, cell in enumerate(cells):
        text = str(cell if cell is not None else "").replace("\ufeff", "").strip()
        if not text:
            continue
        name = field_of_header(text)
        if name is None:
            unknown.append(text)
        elif name in index:
            repeated.append(text)
        else:
            index[name] = i
            written[name] = text
    return HeaderMap(index, written, tuple(unknown), tuple(repeated))


def looks_like_header(cells: Sequence[object]) -> bool:
    """A header row names at least two of the template's columns (rows above it are titles)."""
    return sum(1 for c in cells if c not in (None, "") and field_of_header(c) is not None) >= 2


def missing_columns_message(missing: Sequence[str]) -> str:
    zh = "、".join(FIELD_LABELS_ZH[f] for f in missing)
    en = ", ".join(missing)
    return (f"缺少必填列:{zh}。请使用导入模板的表头(中文或英文均可) / "
            f"required columns missing: {en}; use the import template's headers (Chinese or English)")


def header_warnings(headers: HeaderMap) -> list[str]:
    """What the job reports once about the header row (nothing stops the import)."""
    warnings = [f"未识别的列“{h}”已忽略 / unknown column '{h}' ignored" for h in headers.unknown]
    warnings += [f"重复的列“{h}”已忽略,只读取第一列 / repeated column '{h}' ignored; the first one is read"
                 for h in headers.repeated]
    return warnings


def too_many_rows_message(rows: int) -> str:
    return (f"文件有 {rows:,} 行数据,超过上限 {MAX_ROWS:,} 行,请拆分后分别导入 / "
            f"the file has {rows:,} data rows, more than the {MAX_ROWS:,} allowed; "
            "split it into several files")


def column_number(letters: str) -> int:
    """A spreadsheet column's number: A is 1, Z 26, AA 27, XFD 16384."""
    number = 0
    for ch in letters.upper():
        number = number * 26 + ord(ch) - 64
    return number


def sheet_too_large_message(rows: int, columns: int) -> str:
    return (f"工作表的使用区域达到 {rows:,} 行 × {columns:,} 列,超过导入上限(最多 {MAX_SHEET_ROWS:,} 行、"
            f"{MAX_COLUMNS} 列、共 {MAX_SHEET_CELLS:,} 个单元格);请删除数据下方和右侧多余的行列(包括空白但有格式的),"
            f"或拆分文件后分别导入 / the sheet's used range reaches {rows:,} rows x {columns:,} columns, beyond "
            f"the import limits ({MAX_SHEET_ROWS:,} rows, {MAX_COLUMNS} columns, {MAX_SHEET_CELLS:,} cells); "
            "delete the rows and columns beyond the data (formatted empty ones too) or split the file")


_ZIP_REASONS = {
    "unreadable": ("文件已损坏或不是有效的 .xlsx 文件", "the file is damaged or not a valid .xlsx file"),
    "entries": ("文件包含的部件过多({n:,} 个)", "the file has too many parts ({n:,})"),
    "duplicate": ("文件中有重名的部件", "the file has two parts with the same name"),
    "size": ("文件解压后过大({n:,} 字节)", "the file is too large once uncompressed ({n:,} bytes)"),
    "ratio": ("文件的压缩比异常({n:,} 字节),疑似压缩炸弹", "the file's compression ratio is abnormal "
              "({n:,} bytes uncompressed), a zip bomb"),
    "method": ("文件使用了不支持的压缩方式", "the file uses an unsupported compression method"),
    "lies": ("文件内部记录的大小与实际内容不符", "a part of the file is not the size it declares"),
}


def zip_refused_message(reason: str, n: int = 0) -> str:
    zh, en = _ZIP_REASONS[reason]
    return (f"无法导入:{zh.format(n=n)}。请用 Excel 或 WPS 打开后另存为 .xlsx 或 .csv 再导入 / "
            f"cannot import: {en.format(n=n)}; open it in Excel or WPS, save it as .xlsx or .csv and retry")


def csv_line_too_long_message(line: int) -> str:
    return (f"第 {line:,} 行过长(超过 {MAX_CSV_LINE_BYTES // 1024} KB),这不像是居民名单;请检查文件是否正确 / "
            f"line {line:,} is longer than {MAX_CSV_LINE_BYTES // 1024} KB, which no resident row is; "
            "check that this is the right file")


# ---------------------------------------------------------------- cells ---------------------


def cell_text(value: object) -> str:
    """A spreadsheet cell as the text a clerk sees: 13812345678.0 is 13812345678, a date is ISO."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


def id_cell_text(value: object) -> str:
    """An ID-number cell: a number there is a number a spreadsheet has already rounded (18 digits do
    not fit a double), so it is written the way Excel shows it and refused by the row check."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{float(value):.15G}"
    return cell_text(value)


_SCIENTIFIC = re.compile(r"^\s*\d+(\.\d*)?[eE][+]?\d+\s*$")


def is_blank(cells: Sequence[object]) -> bool:
    for cell in cells:
        if cell is not None and cell != "" and not (isinstance(cell, str) and cell.isspace()):
            return False
    return True


def shown_value(field_name: str, value: str, limit: int = 50) -> str:
    """A cell as the error report may show it (SPEC §2 "Privacy"): every ID and phone number in it
    masked, whatever the column (a clerk types a phone number into the address), an ID number stored
    as a number too (4.**************E+17); a personal column masked even when its content is no
    recognisable number; anything else cut to `limit` characters."""
    text = value.strip()
    if not text:
        return ""
    masked = mask_personal(text) or ""
    if field_name in PERSONAL_COLUMNS and masked == text:
        masked = (mask_id_number(text) if field_name == "id_number" else mask_phone(text)) or ""
    return masked if len(masked) <= limit else masked[: limit - 1] + "…"


# ---------------------------------------------------------------- messages ------------------

_CATEGORY_WORDS = "、".join(CATEGORIES.values())
_ID_REASONS_ZH = {
    "missing": "身份证号必填",
    "length": "身份证号应为 18 位,这个是 {n} 位",
    "characters": "身份证号 {masked} 含有不允许的字符:只能是数字,最后一位可以是 X",
    "region": "身份证号 {masked} 的前两位不是有效的省份代码",
    "birth_date": "身份证号 {masked} 中的出生日期(第 7-14 位)不存在",
    "future_birth_date": "身份证号 {masked} 中的出生日期在今天之后",
    "check_character": "身份证号 {masked} 的校验位不对,可能有数字输错",
}


def id_number_message(error: IdNumberError, value: str) -> str:
    zh = _ID_REASONS_ZH.get(error.reason, "身份证号有误").format(
        masked=error.masked or shown_value("id_number", value), n=len(value.strip()))
    return f"{zh} / {error.message}"


def scientific_id_message(value: str) -> str:
    return ("身份证号被表格软件存成了数字(科学计数法),后几位已经丢失;请把这一列设为“文本”格式后重新录入 / "
            "the ID number was stored as a number (scientific notation) and its last digits are lost; "
            "format the column as text and enter the numbers again")


def clerk_message(field_name: str, english: str, value: str) -> str:
    """`validate_resident`'s English message for one field, Chinese first for a county clerk."""
    label = FIELD_LABELS_ZH.get(field_name, field_name)
    text = value.strip()
    if english.endswith("is required") or english.startswith("is required"):
        zh = f"{label}必填"
        if field_name == "living_arrangement":
            zh += "(独居、空巢、与家人同住 或 机构)"
    elif "is longer than" in english:
        limit = re.search(r"longer than (\d+)", english)
        zh = f"{label}超过 {limit.group(1) if limit else ''} 个字"
    elif field_name == "county_code":
        zh = f"县区代码“{text}”不是本市的县区代码"
    elif field_name == "living_arrangement":
        zh = f"居住状况“{text}”无法识别,请填写 独居、空巢、与家人同住 或 机构"
    elif field_name == "categories":
        if "特困" in english and "centralised" in english and "must say" in english:
            zh = "“特困”要写明是 特困集中供养 还是 特困分散供养"
        elif "not both" in english:
            zh = "特困集中供养 和 特困分散供养 只能填一个"
        else:
            bad = re.match(r"'([^']*)'", english)
            zh = f"特殊困难类别“{bad.group(1) if bad else text}”无法识别,请从 {_CATEGORY_WORDS} 中选填,多个用分号隔开"
    elif field_name == "ability_level":
        zh = "能力等级应为 0(能力完好)到 4(能力完全丧失)"
    elif field_name == "family_doctor_contract":
        zh = f"家庭医生签约“{text}”无法识别,请填写 是 或 否"
    elif field_name == "family_doctor_signed_on":
        if "future" in english:
            zh = f"签约日期“{text}”在今天之后"
        elif "needs" in english or "has no signing date" in english:
            zh = "填写了签约日期,家庭医生签约一栏应为“是”"
        else:
            zh = f"签约日期“{text}”不是日期,请写成 2025-03-01"
    elif field_name in ("phone", "emergency_phone"):
        zh = f"{label}不是有效的电话号码:请填写 11 位手机号,或区号加座机号"
    elif field_name in ("home_lat", "home_lon"):
        zh = (f"{label}有误:请填写 WGS-84 十进制度数(纬度 -90 至 90,经度 -180 至 180,如 35.7621、115.0300),"
              "住址纬度和住址经度须同时填写或同时留空")
    else:
        zh = f"{label}有误"
    return f"{zh} / {english}"


def nul_message(field_name: str) -> str:
    label = FIELD_LABELS_ZH.get(field_name, field_name)
    return (f"{label}含有不可见的空字符(NUL),请删除后重新导入 / {field_name} contains a NUL character; "
            "delete it and import again")


def status_message(value: str) -> str:
    return (f"状态“{value.strip()}”无法识别,请填写 正常、死亡 或 迁出 / "
            f"'{value.strip()}' is not a status; use active 正常, deceased 死亡 or transferred 迁出")


def scope_message(county: str, scope: str) -> str:
    return (f"这一行属于县区 {county},您只能导入县区 {scope} 的居民 / "
            f"this row is for county {county}; your account may import residents of county {scope} only")


def duplicate_message(masked: str, first_row: int) -> str:
    return (f"身份证号 {masked} 在第 {first_row} 行已经出现过,以第一次出现的为准 / "
            f"this ID number already appears in row {first_row}; the first row counts")


def other_county_message(masked: str, owner: str) -> str:
    return (f"身份证号 {masked} 已由县区 {owner} 登记;居民迁入迁出请办理转移手续 / "
            f"already registered by county {owner}; moving a resident is a transfer")


# ---------------------------------------------------------------- rows ----------------------

# A checked row, as the importer stages it: the spreadsheet row number, the resident id it gets if new,
# then the residents table's columns in this order.
STAGED_COLUMNS: tuple[str, ...] = (
    "row_no", "id", "id_number", "name", "phone", "county_code", "township", "village", "address",
    "living_arrangement", "categories", "ability_level", "emergency_contact", "emergency_phone",
    "home_lat", "home_lon", "birth_date", "gender", "status", "family_doctor_contract", "family_doctor_signed_on",
)
ROW_NO, ID, ID_NUMBER, NAME, PHONE, COUNTY, TOWNSHIP, VILLAGE, ADDRESS, LIVING, CATEGORIES, LEVEL, CONTACT, \
    EMERGENCY_PHONE, HOME_LAT, HOME_LON, BIRTH_DATE, GENDER, STATUS, CONTRACT, SIGNED_ON = range(len(STAGED_COLUMNS))
# Where the optional family-doctor columns sit in template order (after status).
_CONTRACT_AT, _SIGNED_AT = (IMPORT_FIELDS.index(f) for f in ("family_doctor_contract", "family_doctor_signed_on"))
RowError = tuple[int, str, str, str]  # (row number, column as written, value shown, message)

_DIGITS_X = frozenset("0123456789X")
_MOBILE_SECOND = frozenset("3456789")
_ODD = frozenset("13579")


def _partial(digits: str, offset: int) -> int:
    # GB 11643 §5.5: the weighted sum of a slice of the first 17 digits.
    return sum(int(ch) * WEIGHTS[offset + i] for i, ch in enumerate(digits))


_SEQ_PARTIAL = {f"{s:03d}": _partial(f"{s:03d}", 14) for s in range(1000)}


@dataclass
class RowChecker:
    """Checks one file's rows in order, remembering what a file-wide rule needs (the first row of
    each ID number). Valid rows come back as a staged tuple (STAGED_COLUMNS, with an id from `new_id`
    for the resident should it be new); problems pile up in `errors` for the caller to drain."""

    headers: HeaderMap
    known_counties: Collection[str]
    scope_county: str | None
    today: date
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())
    errors: list[RowError] = field(default_factory=list)
    rejected: int = 0

    def __post_init__(self) -> None:
        self._known = frozenset(self.known_counties)
        self._ix = tuple(self.headers.index.get(f, -1) for f in IMPORT_FIELDS)
        self._in_order = self._ix == tuple(range(len(IMPORT_FIELDS)))
        self._first_row: dict[str, int] = {}
        # Caches for the fast path: a value seen once is normalised once.
        self._region: dict[str, int] = {}
        self._birth: dict[str, tuple[date, int] | None] = {}
        self._county: dict[str, str | None] = {}
        self._living: dict[str, str] = {}
        self._categories: dict[str, list[str]] = {"": []}
        self._level: dict[str, int | None] = {"": None}

    # The fast path: returns None when a value is anything but plainly valid.
    def _fast(self, v: list[str]) -> tuple | None:
        name = v[0].strip()
        if not name or len(name) > 50:
            return None
        idn = v[1].strip()
        if len(idn) != 18 or not idn.isascii() or not idn[:17].isdigit() or idn[17] not in _DIGITS_X:
            return None
        region = self._region.get(idn[:6])
        if region is None:
            if idn[:2] not in PROVINCE_CODES:
                return None
            region = self._region[idn[:6]] = _partial(idn[:6], 0)
        ymd = idn[6:14]
        birth = self._birth.get(ymd, False)
        if birth is False:
            birth = self._birth[ymd] = self._parse_birth(ymd)
        if birth is None:
            return None
        if CHECK_CHARACTERS[(region + birth[1] + _SEQ_PARTIAL[idn[14:17]]) % 11] != idn[17]:
            return None
        county = self._county.get(v[3])
        if county is None:
            text = v[3].strip()
            if text.endswith(".0"):
                text = text[:-2]
            if text not in self._known:
                return None
            county = self._county[v[3]] = text
        township = v[4].strip()
        village = v[5].strip()
        if not township or not village or len(township) > 50 or len(village) > 50:
            return None
        address = v[6].strip() or None
        if address is not None and len(address) > 200:
            return None
        living = self._living.get(v[7].strip())
        if living is None:
            try:
                living = normalise_living_arrangement(v[7])
            except ValueError:
                return None
            self._living[v[7].strip()] = living
        categories = self._categories.get(v[8])
        if categories is None:
            try:
                categories = normalise_categories(v[8] or None)
            except ValueError:
                return None
            if len(self._categories) < 10_000:
                self._categories[v[8]] = categories
        level = self._level.get(v[9], -1)
        if level == -1:
            try:
                level = normalise_ability_level(v[9])
            except ValueError:
                return None
            if len(self._level) < 1000:
                self._level[v[9]] = level
        phone = v[2]
        if not (len(phone) == 11 and phone.isdigit() and phone[0] == "1" and phone[1] in _MOBILE_SECOND):
            phone = _phone(phone)
            if phone is False:
                return None
        contact = v[10].strip() or None
        if contact is not None and len(contact) > 50:
            return None
        emergency_phone = v[11]
        if not (len(emergency_phone) == 11 and emergency_phone.isdigit() and emergency_phone[0] == "1"
                and emergency_phone[1] in _MOBILE_SECOND):
            emergency_phone = _phone(emergency_phone)
            if emergency_phone is False:
                return None
        lat_text, lon_text = v[12].strip(), v[13].strip()
        if lat_text or lon_text:
            try:
                home_lat = normalise_coordinate(lat_text, "home_lat")
                home_lon = normalise_coordinate(lon_text, "home_lon")
            except ValueError:
                return None
            if home_lat is None or home_lon is None:
                return None
        else:
            home_lat = home_lon = None
        gender = "male" if idn[16] in _ODD else "female"  # GB 11643 §5.4: odd sequence = man
        return (idn, name, phone, county, township, village, address, living, categories, level,
                contact, emergency_phone, home_lat, home_lon, birth[0], gender)

    def _parse_birth(self, ymd: str) -> tuple[date, int] | None:
        try:
            birth = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
        except ValueError:
            return None
        if birth.year < EARLIEST_BIRTH_YEAR or birth > self.today:
            return None
        return birth, _partial(ymd, 6)

    def check(self, row_no: int, cells: Sequence[str]) -> tuple | None:
        """The staged row, or None when the row is rejected (its errors appended to `errors`)."""
        n = len(cells)
        if n == len(IMPORT_FIELDS) and self._in_order:
            v = cells  # the template's own column order
        else:
            v = [cells[i] if 0 <= i < n else "" for i in self._ix]
        if "\x00" in "".join(v):
            # PostgreSQL text cannot hold a NUL (COPY would fail the whole chunk): this row only.
            at = next(i for i, c in enumerate(v) if "\x00" in c)
            return self._reject(row_no, IMPORT_FIELDS[at], v[at].replace("\x00", "\ufffd"),
                                nul_message(IMPORT_FIELDS[at]))
        staged = self._fast(v)
        if staged is None:
            staged = self._slow(row_no, v)
            if staged is None:
                self.rejected += 1
                return None
        status = None  # not given: a new resident is active, a registered one keeps theirs
        if self._ix[STATUS_INDEX] >= 0:
            raw_status = v[STATUS_INDEX].strip()
            if raw_status:
                status = STATUS_WORDS.get(raw_status.lower() if raw_status.isascii() else raw_status)
                if status is None:
                    return self._reject(row_no, "status", v[STATUS_INDEX], status_message(v[STATUS_INDEX]))
        contract = signed_on = None  # not given: none for a new resident, the recorded one kept otherwise
        raw_contract, raw_signed = v[_CONTRACT_AT], v[_SIGNED_AT]
        if raw_contract or raw_signed:
            try:
                contract = normalise_contract(raw_contract)
            except ValueError as exc:
                return self._reject(row_no, "family_doctor_contract", raw_contract,
                                    clerk_message("family_doctor_contract", str(exc), raw_contract))
            try:
                signed_on = normalise_signed_on(raw_signed, self.today)
            except ValueError as exc:
                return self._reject(row_no, "family_doctor_signed_on", raw_signed,
                                    clerk_message("family_doctor_signed_on", str(exc), raw_signed))
            problem = family_doctor_problem(contract, signed_on)
            if problem is not None:
                return self._reject(row_no, "family_doctor_signed_on", raw_signed,
                                    clerk_message("family_doctor_signed_on", problem, raw_signed))
        county = staged[3]
        if self.scope_county is not None and county != self.scope_county:
            return self._reject(row_no, "county_code", v[3], scope_message(county, self.scope_county))
        idn = staged[0]
        first = self._first_row.get(idn)
        if first is not None:
            return self._reject(row_no, "id_number", v[1], duplicate_message(mask_id_number(idn), first))
        self._first_row[idn] = row_no
        return (row_no, self.new_id()) + staged + (status, contract, signed_on)

    def _reject(self, row_no: int, field_name: str, value: str, message: str) -> None:
        self.errors.append((row_no, self.headers.column(field_name), shown_value(field_name, value),
                            mask_personal(message)))
        self.rejected += 1
        return None

    def _slow(self, row_no: int, v: list[str]) -> tuple | None:
        raw = {f: v[i] for i, f in enumerate(RECORD_FIELDS)}
        fields, problems = validate_resident(raw, self._known, self.today)
        if not problems:
            assert fields is not None
            return (fields.id_number, fields.name, fields.phone, fields.county_code, fields.township,
                    fields.village, fields.address, fields.living_arrangement, fields.categories,
                    fields.ability_level, fields.emergency_contact, fields.emergency_phone,
                    fields.home_lat, fields.home_lon, fields.birth_date, fields.gender)
        for problem in problems:
            value = raw.get(problem.field) or ""
            if problem.field == "id_number" and _SCIENTIFIC.match(value):
                # validate_resident calls it a bad character; the clerk needs to hear why.
                self.errors.append((row_no, self.headers.column("id_number"), shown_value("id_number", value),
                                    scientific_id_message(value)))
                continue
            if problem.field == "id_number":
                try:
                    parse_id_number(value, today=self.today)
                    message = clerk_message("id_number", problem.message, value)
                except IdNumberError as exc:
                    message = id_number_message(exc, value)
            else:
                message = clerk_message(problem.field, problem.message, value)
            # Messages quote what was typed ('xxx' is not a living arrangement): masked by content too.
            self.errors.append((row_no, self.headers.column(problem.field), shown_value(problem.field, value),
                                mask_personal(message)))
        return None


def _phone(value: str) -> str | None | bool:
    """A phone cell normalised, None when empty, False when `normalise_phone` must speak."""
    text = value.strip()
    if not text:
        return None
    if len(text) == 11 and text[0] == "1" and text[1] in _MOBILE_SECOND and text.isascii() and text.isdigit():
        return text
    try:
        return normalise_phone(text)
    except ValueError:
        return False
