"""Detection of personal data in push text (the spec's minimization rule).

Each detector errs towards what the spec names and no further: a price, a date or an
order number must not block a campaign, so numbers are only flagged when they pass the
same checks the real identifiers carry (Luhn, ISO 7064 check digit, a real birth date).
Results name the kind only; the matched text is never returned, so it cannot leak into
reasons, logs or the ledger.

The detectors read ASCII digits, separators and "@" (an address's letters may be of any
script). Text is folded to those first (`_fold`), so personal data disguised with look-alike
characters is still found: full-width or other scripts' digits and "＠", invisible characters
(zero-width spaces and joiners, soft hyphens, direction marks, variation selectors, fillers,
control characters, a keycap's enclosing mark) dropped from inside a number or an address,
no-break spaces, tabs and runs of spaces as one space, Unicode dashes as "-", an ideographic full
stop between Latin letters as a dot ("qq。com"), a middle dot or bullet between digits as a dot
("138·1234·5678"). Text holding URL escapes or HTML character
references is read as written and after each pass that decodes it ("alice%40example.com" in a
deeplink). Not read: a "+" for a space ("4111+1111+1111+1111"), which sums in offers write as
well. Both `could_hold_pii` and `find_pii` read it so, so the first still rules out only text
the second finds nothing in.
"""

import re
import unicodedata
from collections.abc import Iterator
from datetime import date
from functools import cache
from html import unescape
from itertools import accumulate
from typing import Literal, NamedTuple
from urllib.parse import unquote

PiiKind = Literal["email", "phone", "card", "cn_resident_id"]
PII_KINDS: tuple[PiiKind, ...] = ("email", "phone", "card", "cn_resident_id")

# Letters of any script, as internationalized addresses have them (RFC 6531: "josé@example.com",
# "zhang@例子.中国"), with their combining marks (a decomposed "é", Devanagari, Thai), except in
# the local part the scripts that put no space before an @-mention ("关注@钱包官方", "并@3位好友"):
# far more push text holds those than addresses with a Chinese, Japanese or Korean local part,
# which are not found. The top-level domain is letters only, so a handle and a year
# ("wallet@shop.2024") is not one. Starts only where a run of local-part characters starts: the
# same matches, but a long run with no "@" is scanned once. Built on first use (`_email`).
_NO_SPACE_SCRIPTS = (
    "\u2e80-\u2fff\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
)


@cache
def _email_parts() -> tuple[str, str]:
    """(one local-part character, "@" and the domain): the pattern, apart from where it starts."""
    marks = _char_class(
        [code for code in range(0x10000) if unicodedata.category(chr(code)) in ("Mn", "Mc", "Me")]
    )
    letter = rf"(?:[^\W\d_]|[{marks}])"
    local = rf"(?:[^\W{_NO_SPACE_SCRIPTS}]|[{marks}.%+-])"
    # A file's extension is no top-level domain: "banner@2x.png", "a.jpg@672w_378h_1c.webp" (an
    # image service's parameters), "promo@2x.mp4" and "terms@v2.pdf" name files, and `image_url`
    # is a data key. (`.mov` is also a top-level domain, where hardly anyone has an address.)
    # (Not a boundary after the domain: Chinese text runs on after an address with no space.)
    file = r"(?!(?i:png|jpe?g|gif|webp|svg|avif|hei[cf]|jxl|bmp|ico|tiff?|json|lottie|pdf|mp4|webm|mov)\b)"
    return local, rf"@[\w{marks}-]+(?:\.[\w{marks}-]+)*\.{file}{letter}{{2,}}"


@cache
def _email() -> re.Pattern[str]:
    local, domain = _email_parts()
    return re.compile(rf"(?<!{local}){local}+{domain}")


# Between two digits of a number: nothing, one space, dash or dot, or an area code's parenthesis
# with or without one. Only the gate below uses it; the phone patterns say where a parenthesis goes.
_GAP = r"(?:[ .-]|[ .-]?\(|\)[ .-]?)?"
# E.164: "+", a country code not starting with 0, 8 to 15 digits in all (`_e164_found`), single
# spaces, dashes or dots between them; the area code, or the "+" and country code, may stand in
# parentheses ("+1 (202) 555-0143", "+86(10)65529988", "(+86) 138 0013 8000"), which a bonus and
# a date ("+100 (2024.06.15)") never match. Not right after a digit or "+".
_E164 = re.compile(
    r"(?<![0-9+_])(?:"
    r"\(\+[1-9]\d{0,2}\)[ .-]?\d(?:[ .-]?\d){5,13}"
    r"|\+[1-9]\d{0,2}[ .-]?\(\d{1,4}\)[ .-]?\d(?:[ .-]?\d){2,11}"
    r"|\+[1-9](?:[ .-]?\d){7,14}"
    r")(?!\d)"
)
# Mainland China mobile: 11 digits 1[3-9]…, plain or grouped 3-4-4 by one consistent separator
# (mixed, "Bus 139 0600-2300" and "CA168 0830-1145" read as phones), or 3-8 by a space or dash
# ("138 12345678"; by a dot it reads as a decimal),
# not part of a longer run of digits (a dot beside it may be a full stop or a version's: flagged).
# The country code may come first without a "+", as "86" or after the dialing prefix, "0086",
# glued to the number ("8613800138000"; after a space or a dash the number stands alone already).
# So a run of 13 or 15 digits is a phone only when it starts with that prefix; a longer run, or
# one after a digit or "+", is not. Each form starts with its own digits and looks behind them
# only then, so the engine skips ahead to a "0", "1" or "8": text of mostly letters costs this
# pattern a quarter to a half of what it did, a body of nothing but digits up to a quarter more
# (a few percent of the whole scan of such a body).
_CN_MOBILE = re.compile(
    "(?:"
    + "|".join(rf"{prefix}1[3-9](?<![\d+]{prefix}1[3-9])" for prefix in ("", "86", "0086"))
    + r")\d(?:([ .-]?)\d{4}\1\d{4}|[ -]\d{8})(?!\d)"
)
# Digit groups joined by one consistent separator, so "2024-06-15 2024-06-22" stays two runs. A
# dot too ("4111.1111.1111.1111"): amounts and dates in dots are not card-shaped (`card_spans`).
_DIGIT_RUN = re.compile(r"(?<![\d+])\d+(?:([ .-])\d+(?:\1\d+)*)?(?!\d)")
# Resident ID: 18 characters, plain or grouped by one consistent space, dash or dot 6-8-4
# (region, birth date, sequence and check) or 6-4-4-4, and a letter may come just before it
# ("ID110105…"): the birth date and check character keep other numbers out.
_RESIDENT_ID = re.compile(r"(?<!\d)\d{6}(?:([ .-]?)\d{8}\1|([ .-])\d{4}\2\d{4}\2)\d{3}[0-9Xx](?![0-9A-Za-z])")
# Eight digits with `_GAP`s between them: the least any number kind below has (E.164), so text
# without it skips the number checks — most push text. `[0-9]`, not `\d`: folding leaves no
# other digit, and the engine tests a class of ASCII ranges in a bitmap where `\d` asks the
# Unicode database for each character (2.5 against 1.6 µs on a typical push).
_NUMBER_LIKE = re.compile(rf"[0-9](?:{_GAP}[0-9]){{7}}")
# The gate's shape, looser, in bytes: an ASCII digit as "0", a space as itself, the other
# characters a gap may hold as "g", any other byte (a UTF-8 sequence's bytes too) as "x". Every
# number `_NUMBER_LIKE` finds has this shape, as a gap is at most two of those characters.
_SHAPES = bytes(
    ord("0") if 0x30 <= b <= 0x39 else b if b == 0x20 else ord("g") if chr(b) in ".-()" else ord("x")
    for b in range(256)
)
_SHAPE_LIKE = re.compile(rb"0(?:[g ]{0,2}0){7}")
# What `could_hold_pii` cannot rule out from the shape alone: an "@", what a reading decodes
# ("%", "&"), what folding changes but runs of spaces (controls but the line break; non-ASCII,
# whose UTF-8 bytes are all above 0x7f).
_NOT_PLAIN = bytes([*b"@%&", *(b for b in range(0x20) if b != 0x0A), *range(0x7F, 0x100)])


def _number_like(text: str) -> bool:
    """`_NUMBER_LIKE` found in `text`. The pattern backtracks through its gap's alternatives at
    every digit, so text is first read in its looser shape, which most push text lacks (an
    order number and a link to it included): 0.5–0.7 µs on a typical push, where the pattern
    alone takes 1.3–1.9, and 1.3 where it takes 3.6 (two seven-digit order numbers); text of
    that shape pays 0.35 µs more."""
    shape = text.encode("utf-8", "surrogatepass").translate(_SHAPES)
    return _SHAPE_LIKE.search(shape) is not None and _NUMBER_LIKE.search(text) is not None


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # a digit's Luhn value where it is doubled


def _contains_card(text: str) -> bool:
    """Check each run and, for runs too long to be one card, each card-shaped span of it."""
    return any(_luhn_span(re.split(r"[ .-]", match.group(0))) for match in _DIGIT_RUN.finditer(text))


def card_spans(groups: list[str]) -> Iterator[tuple[int, int]]:
    """(first, stop) group indexes of each span of groups written as cards are: one run of 13-19
    digits; groups of four, the last of one to four, 13-19 digits in all (4-4-4-4, 4-4-4-4-3);
    or 4-6-5, 4-6-4 and, starting with a 4, 4-3-3-3 (American Express, Diners, a 13-digit Visa:
    any 4-3-3-3 let one list of prices in ten through, "Tickets 1280 880 680 480"). Thirteen
    digits only as Visa wrote them, starting with a 4: one EAN-13 barcode, airline e-ticket or
    millisecond timestamp in ten was taken for a card. Any span of groups
    that passed Luhn was a card before, and one list of shoe sizes in four ("36 37 38 39 40 41 42
    43") was rejected as one."""
    lengths = [len(group) for group in groups]
    for first, length in enumerate(lengths):
        if 13 <= length <= 19 and (length > 13 or groups[first][0] == "4"):
            yield first, first + 1
        if length != 4:
            continue
        if lengths[first + 1 : first + 3] in ([6, 5], [6, 4]):
            yield first, first + 3
        if lengths[first + 1 : first + 4] == [3, 3, 3] and groups[first][0] == "4":
            yield first, first + 4
        digits, stop, visa = 0, first, groups[first][0] == "4"
        while stop < len(lengths) and lengths[stop] == 4 and digits + 4 <= 19:
            digits += 4
            stop += 1
            last = lengths[stop] if stop < len(lengths) else 0
            if 1 <= last <= 4 and 13 <= digits + last <= 19 and (digits + last > 13 or visa):
                yield first, stop + 1


def _luhn_span(groups: list[str]) -> bool:
    """Whether some card-shaped span of the groups passes Luhn. Each span's Luhn sum is the
    difference of two prefix sums, so a span costs a few steps, not a join and a Luhn pass over
    its digits: that cost 9-14 µs per character of a body of single digits ("1 1 1 ..."), 5-7 ms
    at the rule's 500 characters and up to a quarter of a second at the edge's 16,384
    (bench/pii_cost.py)."""
    plain = [code - 48 for code in "".join(groups).encode()]
    doubled = [_DOUBLED[digit] for digit in plain]
    # A span whose last digit is at an even position doubles the digits at odd ones, and the
    # other way round: sums[p][k] is the sum of the first k digits as a span ending at parity p
    # counts them, so a span's Luhn sum is the difference of two entries.
    ends_even, ends_odd = plain[:], doubled[:]
    ends_even[1::2], ends_odd[1::2] = doubled[1::2], plain[1::2]
    sums = (list(accumulate(ends_even, initial=0)), list(accumulate(ends_odd, initial=0)))
    bounds = list(accumulate(map(len, groups), initial=0))
    for first, stop in card_spans(groups):
        start, end = bounds[first], bounds[stop]
        by_end = sums[(end - 1) % 2]
        if (by_end[end] - by_end[start]) % 10 == 0:
            return True
    return False


# Digit groups that read as an amount ("10.000.000", "10 000 000") or hold a date ("2024.06.15").
_THOUSANDS = re.compile(r"\d{1,3}(?:([ .,])\d{3})(?:\1\d{3})*")
_DATE = re.compile(r"(?<!\d)(?:19|20)\d{2}([.-])\d{1,2}\1\d{1,2}(?!\d)")


def _e164_found(text: str) -> bool:
    """An `_E164` match of 8 to 15 digits that reads as a number, not a sum or a date.

    Fewer than 10 digits is a short number, and a sum often is: one needs a grouping that is not
    an amount's ("+65 9123 4567", not "+50000000" or "+10 000 000"), and no letter right before
    it ("奖池+10000000元", "q=sale+20240615"; Chinese and Japanese put no space before a number, so
    a long one there is a phone: "电话+8613800138000"). Digits holding a date are never a phone
    ("(+50) 2024.06.15")."""
    for match in _E164.finditer(text):
        number = match.group(0)
        digits = sum(char.isdigit() for char in number)
        if not 8 <= digits <= 15 or _DATE.search(number):
            continue
        if digits >= 10:
            return True
        body = number.lstrip("(+")
        after_letter = match.start() > 0 and text[match.start() - 1].isalpha()
        if not after_letter and not body.isdigit() and not _THOUSANDS.fullmatch(body):
            return True
    return False


# GB/T 2260's provinces: north 11-15, north-east 21-23, east 31-37, central south 41-46, south
# west 50-54, north-west 61-65, Taiwan 71, Hong Kong, Macao 81-82 (and 83, on the ids issued to
# residents of Taiwan in the mainland).
_PROVINCES = frozenset(
    str(code)
    for codes in (range(11, 16), range(21, 24), range(31, 38), range(41, 47), range(50, 55), range(61, 66))
    for code in codes
) | {"71", "81", "82", "83"}


def _contains_resident_id(text: str) -> bool:
    return any(resident_id_valid(re.sub(r"[ .-]", "", m.group(0))) for m in _RESIDENT_ID.finditer(text))


def resident_id_valid(candidate: str) -> bool:
    """GB 11643: a province of GB/T 2260 in digits 1-2, or a 9 and then one (the Foreign Permanent
    Resident ID Card of 2023), where an 18-digit store order number (store code, date, serial) was
    taken for an id one time in ten; the birth date in digits 7-14; and an ISO 7064 MOD 11-2
    check character."""
    body, check = candidate[:17], candidate[17].upper()
    if body[:2] not in _PROVINCES and not (body[0] == "9" and body[1:3] in _PROVINCES):
        return False
    try:
        birth = date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        return False
    if birth.year < 1900:
        return False
    total = sum(int(digit) * weight for digit, weight in zip(body, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == check


# Invisible, but not format characters (Cf): the rest of Unicode's default-ignorable code points
# (the combining grapheme joiner, Hangul fillers, Mongolian and other variation selectors, the
# unassigned ones of plane 14), and the keycap's enclosing mark ("1️⃣" is "1", U+FE0F, U+20E3).
_INVISIBLE = frozenset(
    (0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2065, 0x3164, 0xFFA0, 0x20E3, *range(0x180B, 0x1810),
     *range(0xFE00, 0xFE10), *range(0xFFF0, 0xFFF9), *range(0xE0000, 0xE1000))
)  # fmt: skip


def _fold_char(char: str) -> str:
    """One character as the detectors read it: NFKC (full-width forms, no-break and ideographic
    spaces, "＠", circled digits), then invisible characters and controls dropped, dashes made "-"
    and digits NFKC leaves alone (Arabic-Indic, Devanagari...) made ASCII."""
    out = []
    for part in unicodedata.normalize("NFKC", char):
        category = unicodedata.category(part)
        if category == "Pd":
            out.append("-")
        elif category == "Nd":
            out.append(str(unicodedata.decimal(part)))
        elif category not in ("Cf", "Cc") and ord(part) not in _INVISIBLE:
            out.append(part)
    return "".join(out)


# The planes with every character NFKC or the rules above change: the BMP, the SMP (mathematical
# digits) and plane 14 (tag characters, format characters).
_FOLD_RANGES = (range(0x80, 0x20000), range(0xE0000, 0xE1000))


# ASCII punctuation no detector's pattern names, inside or around a match: a character that folds
# to one of these (full-width "，", "！", "（"...) reads the same to every pattern folded or not.
_INERT = frozenset("!\"#$&'*,/:;<=>?[\\]^`{|}~")


class _Folding(NamedTuple):
    table: dict[int, str]  # every non-ASCII character `_fold_char` changes, to what it becomes
    needed: re.Pattern[str]  # those among them that can change what a detector finds


@cache
def _folding() -> _Folding:
    """Built once (~0.1 s, ~5,000 entries) at the first non-ASCII text. NFKC of a whole text
    differs from NFKC per character only where it composes combining marks, which form no digit,
    separator or "@". Chinese text is full of full-width punctuation that is inert, so it is
    scanned for the characters that matter before it is translated."""
    table: dict[int, str] = {}
    for block in _FOLD_RANGES:
        for code in block:
            char = chr(code)
            folded = _fold_char(char)
            if folded != char:
                table[code] = folded
    # Any character beyond the BMP counts as needed: a class with ranges there is matched range by
    # range, ~30 times slower than one the BMP's bitmap holds, and such text (emoji) is rare.
    needed = [code for code, folded in table.items() if code < 0x10000 and folded not in _INERT]
    return _Folding(table, re.compile(f"[{_char_class(needed)}\U00010000-\U0010ffff]"))


def _char_class(codes: list[int]) -> str:
    """Ascending code points as the ranges of a character class."""
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(
        re.escape(chr(low)) if low == high else f"{re.escape(chr(low))}-{re.escape(chr(high))}"
        for low, high in ranges
    )


# ASCII controls but the line break (which keeps fields apart), and tabs; runs of spaces too.
_UNTIDY = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[\t\x0b\x0c\r ]{2,}|[\t\x0b\x0c\r]")
# An ideographic full stop as a domain's dot: only between Latin letters or digits and a Latin
# letter ("qq。com"), so that a Chinese sentence's end ("关注WeChat@钱包。欢迎") makes no domain.
_CJK_DOT = re.compile(r"(?<=[A-Za-z0-9])\u3002(?=[A-Za-z])")
# Middle dots and bullets (Latin, Greek's folds to it, the hyphenation point, katakana's, which the
# half-width one folds to, the bullet and the math operators): a separator only between digits,
# since Japanese lists and names written with them ("セール・お得") must make no domain.
_MIDDLE_DOTS = "[\u00b7\u2022\u2027\u2219\u22c5\u30fb]"
_MIDDLE_DOT = re.compile(_MIDDLE_DOTS)
_DIGIT_DOT = re.compile(f"(?<=[0-9]){_MIDDLE_DOTS}(?=[0-9])")


def _fold(text: str) -> str:
    """The text as the detectors read it (`_fold_char`, per character; spacing and controls made
    plain). Most push text is ASCII, or has nothing to fold that matters, and is returned as it is.
    Dots are read after the controls go: a control between a full stop and a domain's next
    letter ("bob@qq。\x01com", in a data value, which no showability check reads) hid an address."""
    if text.isascii():
        return _plain(text)
    folding = _folding()
    if folding.needed.search(text) is not None:
        text = text.translate(folding.table)
    text = _plain(text)
    if "\u3002" in text and "@" in text:  # only an address has a domain
        text = _CJK_DOT.sub(".", text)
    if _MIDDLE_DOT.search(text) is not None:
        text = _DIGIT_DOT.sub(".", text)
    return text


def _plain(text: str) -> str:
    """Controls dropped and spacing made single."""
    if "  " in text or _UNTIDY.search(text) is not None:  # one class alone: scanned fast
        return _SPACES.sub(" ", _CONTROLS.sub("", text))
    return text


_URL_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# An HTML character reference: numeric, or named (a legacy name may go without its ";").
_HTML_REFERENCE = re.compile(r"&(?:#|[A-Za-z])")
_DECODING_PASSES = 4


def _readings(text: str) -> Iterator[str]:
    """The text as written, then as it reads after each pass that undoes its escapes (URL
    escapes, then HTML character references: "&#37;40" is "%40" is "@"; "%2540" is "@" escaped
    twice), until nothing changes, four passes at most. Each pass's result is read, not only the
    last, and within a pass the text with its URL escapes alone undone, and with its HTML
    references alone: one decoding is what a link handler, a query parser or a page shows, and a
    digit escaped once more after a number ("4111%201111%201111%201111%2531", "…%201111&sup1=x",
    "4111&#32;…&#32;1111%31") joins it only when undone too. One chain of
    readings whatever the text holds: a reading per partial decoding (a tree) let decoys in one
    field use up the readings before the one that showed an address in another."""
    yield text
    decoded = text
    for _ in range(_DECODING_PASSES):
        step = decoded
        if "%" in step and _URL_ESCAPE.search(step):
            step = unquote(step)
            if "&" in step and step != decoded:
                yield step  # what a query parser reads: "?c=4111%20…%201111&sup1=x" has a card
        if "&" in decoded and _HTML_REFERENCE.search(decoded) and step != decoded:
            html_only = unescape(decoded)
            if "%" in html_only and html_only != decoded:
                yield html_only  # what a page shows: "4111&#32;…&#32;1111%31" has a card
        if "&" in step and _HTML_REFERENCE.search(step):
            step = unescape(step)
        if step == decoded:
            return
        decoded = step
        yield decoded


def could_hold_pii(text: str) -> bool:
    """False only for text `find_pii` finds nothing in: no "@" and no eight-digit run.

    Neither test can match across a newline, so fields joined with "\n" are ruled out
    together in one scan, which is how most pushes (no PII anywhere) are judged. Folding
    keeps a newline a newline, so the fields still stand apart.

    Most push text is plain: ASCII, with no "@", nothing a reading decodes and no control. Its
    only reading is itself, folded at most by its runs of spaces, so the gate's number is all
    there is to look for, and one shape of the text without those bytes tells both: 1.7-1.9 µs
    a typical push where reading it the long way took 2.6 (the AMD host)."""
    shape = text.encode("utf-8", "surrogatepass").translate(_SHAPES, _NOT_PLAIN)
    if len(shape) == len(text):  # no byte went, and a non-ASCII character's bytes all go
        if _SHAPE_LIKE.search(shape) is None and b"  " not in shape:
            return False
        return _number_like(_fold(text))
    for reading in _readings(text):
        folded = _fold(reading)
        if "@" in folded or _number_like(folded):
            return True
    return False


def find_pii(text: str) -> list[PiiKind]:
    """The kinds of personal data in `text`, each at most once, in `PII_KINDS` order."""
    found = {kind for reading in _readings(text) for kind in _find(_fold(reading))}
    return [kind for kind in PII_KINDS if kind in found]


def find_pii_in_label(label: str) -> list[PiiKind]:
    """`find_pii` of a label kept in clear (a key or campaign name, a variant, a notice version,
    a push's data key, which its reasons name), in each of `label_readings`."""
    found = {kind for reading in label_readings(label) for kind in find_pii(reading)}
    return [kind for kind in PII_KINDS if kind in found]


def label_readings(label: str) -> tuple[str, ...]:
    """A label as written, and with `_` and `:` read as spaces: labels join words with them, and
    they group a number's digits as a space does (the key name `4111_1111_1111_1111` and the
    variant `138_1234_5678` were kept). As written too, since a `_` also joins a number to what
    it then reads as part of (`1_4111-1111-1111-1111`) and belongs in an address (`bob_@…`)."""
    spaced = label.translate(_LABEL_JOINS)
    return (label,) if spaced == label else (label, spaced)


_LABEL_JOINS = str.maketrans("_:", "  ")


def _find(text: str) -> list[PiiKind]:
    found: list[PiiKind] = []
    if "@" in text and _email().search(text):
        found.append("email")
    if not _number_like(text):
        return found
    if _e164_found(text) or _CN_MOBILE.search(text):
        found.append("phone")
    if _contains_card(text):
        found.append("card")
    if _contains_resident_id(text):
        found.append("cn_resident_id")
    return found
