"""GB 11643-1999 citizen identity numbers: parse, validate, build and mask.

Layout (§5.1): 6-digit region code (GB/T 2260), 8-digit birth date YYYYMMDD, 3-digit
sequence (odd for men, even for women), 1 check character. Birth date, age and gender are
derived from the number, never typed twice (SPEC §2 "Resident identity").
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date

from shared.regions import is_known_region

__all__ = [
    "IdNumberError",
    "IdentityFacts",
    "check_character",
    "make_id_number",
    "mask_id_number",
    "mask_phone",
    "parse_id_number",
]

# GB 11643 §5.5: ISO 7064 MOD 11-2. Weight of position i (1-based from the left) is
# 2^(18-i) mod 11; the check character is the one that makes the weighted sum ≡ 1 (mod 11),
# with 10 written as "X".
WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARACTERS = "10X98765432"  # indexed by the weighted sum mod 11

# Nobody alive was born before this; an earlier year is a typing error, not an elder.
EARLIEST_BIRTH_YEAR = 1880
_DIGITS = frozenset("0123456789")


def check_character(first17: str) -> str:
    """The GB 11643 check character (0-9 or X) for the first 17 digits of an ID number."""
    if len(first17) != 17 or not set(first17) <= _DIGITS:
        raise ValueError("check_character needs exactly 17 ASCII digits")
    total = sum(int(ch) * w for ch, w in zip(first17, WEIGHTS))
    return CHECK_CHARACTERS[total % 11]


def mask_id_number(v: str | None) -> str | None:
    """Keep the region code and the sequence, hide the birth date and the check character.

    `410928194501011234` → `410928********123*`. The check character is computed from every digit,
    the birth date's too: shown next to the region and sequence it would narrow the date down to a
    few dozen candidates (and the age shown beside it to fewer). Old 15-digit numbers keep region and
    sequence; other lengths (typing errors) keep at most 6 + 3 characters and hide the rest.
    """
    if v is None:
        return None
    s = str(v)
    n = len(s)
    if n == 15:  # GB 11643-1989: region, YYMMDD, sequence, no check character
        return s[:6] + "*" * 6 + s[12:]
    if n >= 14:
        return s[:6] + "*" * (n - 10) + s[-4:-1] + "*"
    if n >= 8:
        keep = n // 4  # short, malformed input: show a little at the start, hide the rest
        return s[:keep] + "*" * (n - keep)
    return "*" * n


def mask_phone(v: str | None) -> str | None:
    """`13812345678` → `138****5678`; ≥ 8 characters keep the first 3 and last 4, shorter keep the last 2."""
    if v is None:
        return None
    s = str(v)
    n = len(s)
    if n >= 8:
        return s[:3] + "*" * (n - 7) + s[-4:]
    if n > 2:
        return "*" * (n - 2) + s[-2:]
    return "*" * n


class IdNumberError(ValueError):
    """An ID number that is not a valid GB 11643 number; names the field and a reason code.

    The message never contains the full number: it is personal data and error messages end
    up in logs and problem responses (SPEC §2 "Privacy").
    """

    field = "id_number"

    def __init__(self, reason: str, message: str, masked: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.masked = masked

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class IdentityFacts:
    """What an ID number states about its holder."""

    id_number: str
    region_code: str
    birth_date: date
    gender: str  # "male" / "female"

    @property
    def sequence(self) -> int:
        return int(self.id_number[14:17])

    @property
    def province_code(self) -> str:
        return self.region_code[:2]

    def age_on(self, d: date) -> int:
        """Completed years on `d` (someone born on 29 February turns a year older on 1 March)."""
        b = self.birth_date
        return d.year - b.year - ((d.month, d.day) < (b.month, b.day))


def _normalise(value: object) -> str:
    if value is None:
        raise IdNumberError("missing", "ID number is required")
    if not isinstance(value, str):
        # Spreadsheets turn an 18-digit ID into a float and lose its last digits: refuse
        # rather than guess, so the clerk re-enters it as text.
        raise IdNumberError(
            "characters",
            "ID number must be entered as text, not as a number (set the spreadsheet column to text)",
        )
    # NFKC turns full-width digits and "Ｘ" typed with a Chinese input method into ASCII.
    s = unicodedata.normalize("NFKC", value).strip()
    if not s:
        raise IdNumberError("missing", "ID number is required")
    # GB 11643 writes the check value 10 as upper-case X; a lower-case x is the same number.
    return s[:-1] + "X" if s[-1] == "x" else s


def parse_id_number(value: str, today: date | None = None) -> IdentityFacts:
    """Validate an 18-character ID number and derive region, birth date and gender.

    Raises IdNumberError (reason: missing, length, characters, region, birth_date,
    future_birth_date, check_character). `today` defaults to the local date.
    """
    s = _normalise(value)
    if len(s) != 18:
        raise IdNumberError(
            "length", f"ID number must have 18 characters, this one has {len(s)}", mask_id_number(s)
        )
    masked = mask_id_number(s)
    if not (set(s[:17]) <= _DIGITS and (s[17] in _DIGITS or s[17] == "X")):
        bad = next(i for i, ch in enumerate(s, 1) if not (ch in _DIGITS or (i == 18 and ch == "X")))
        raise IdNumberError(
            "characters",
            f"ID number {masked} has an invalid character at position {bad}: "
            "only digits are allowed, and X only as the last character",
            masked,
        )
    region = s[:6]
    if not is_known_region(region):
        raise IdNumberError(
            "region",
            f"ID number {masked} starts with region code {region}, "
            f"but {region[:2]} is not a province code (GB/T 2260)",
            masked,
        )
    year, month, day = int(s[6:10]), int(s[10:12]), int(s[12:14])
    try:
        birth = date(year, month, day)
    except ValueError:
        birth = None
    # Positions 7-14 rather than the date itself: the birth date is the part masking hides.
    if birth is None:
        raise IdNumberError(
            "birth_date",
            f"ID number {masked} has an impossible birth date in positions 7-14 (YYYYMMDD)",
            masked,
        )
    if year < EARLIEST_BIRTH_YEAR:
        raise IdNumberError(
            "birth_date",
            f"ID number {masked} has a birth year before {EARLIEST_BIRTH_YEAR} in positions 7-10",
            masked,
        )
    if birth > (today or date.today()):
        raise IdNumberError(
            "future_birth_date",
            f"ID number {masked} has a birth date in the future (positions 7-14)",
            masked,
        )
    expected = check_character(s[:17])
    if s[17] != expected:
        raise IdNumberError(
            "check_character",
            f"ID number {masked} has a wrong check character: expected {expected}; "
            "one of its digits is probably mistyped",
            masked,
        )
    gender = "male" if int(s[16]) % 2 else "female"  # GB 11643 §5.4: odd sequence = man
    return IdentityFacts(id_number=s, region_code=region, birth_date=birth, gender=gender)


def make_id_number(region_code: str, birth: date, sequence: int) -> str:
    """Build a valid 18-character ID number (sequence 0-999; its parity sets the gender)."""
    if not is_known_region(region_code):
        raise ValueError(f"region code {region_code!r} is not six digits under a province code")
    if not 0 <= sequence <= 999:
        raise ValueError("sequence must be between 0 and 999")
    if birth.year < EARLIEST_BIRTH_YEAR or birth.year > 9999:
        raise ValueError(f"birth year must be {EARLIEST_BIRTH_YEAR} or later")
    first17 = f"{region_code}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)
