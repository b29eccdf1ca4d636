"""Personal data as it really shows up in shop traffic: e-mail addresses, French phone
numbers, payment card numbers (Luhn-valid), IBANs (mod-97-valid), IMEIs, MAC addresses.

Everything is synthetic and drawn from `Draws`; check digits are computed, not faked, so
that the pipeline's detectors meet the same values as in production.
"""

from __future__ import annotations

from stream.local.traffic.randomness import Draws

FIRST_NAMES = (
    "marie",
    "camille",
    "lea",
    "manon",
    "chloe",
    "emma",
    "ines",
    "sarah",
    "julie",
    "lucie",
    "anne",
    "nathalie",
    "isabelle",
    "sophie",
    "claire",
    "aurelie",
    "elodie",
    "laura",
    "pauline",
    "thomas",
    "nicolas",
    "julien",
    "maxime",
    "antoine",
    "lucas",
    "hugo",
    "louis",
    "pierre",
    "alexandre",
    "romain",
    "kevin",
    "mehdi",
    "karim",
    "yasmine",
    "fatima",
    "jean",
    "michel",
)
LAST_NAMES = (
    "martin",
    "bernard",
    "dubois",
    "thomas",
    "robert",
    "richard",
    "petit",
    "durand",
    "leroy",
    "moreau",
    "simon",
    "laurent",
    "lefebvre",
    "michel",
    "garcia",
    "david",
    "bertrand",
    "roux",
    "vincent",
    "fournier",
    "morel",
    "girard",
    "andre",
    "mercier",
    "dupont",
    "lambert",
    "bonnet",
    "francois",
    "martinez",
    "benali",
    "nguyen",
    "peeters",
    "janssens",
    "muller",
    "tremblay",
)
MAIL_DOMAINS = (
    "gmail.com",
    "orange.fr",
    "free.fr",
    "hotmail.fr",
    "yahoo.fr",
    "laposte.net",
    "sfr.fr",
    "wanadoo.fr",
    "outlook.fr",
    "icloud.com",
    "gmail.com",
    "gmail.com",
    "skynet.be",
    "bluewin.ch",
    "videotron.ca",
)
# Payment card prefixes: CB/Visa issued in France, Mastercard, American Express.
CARD_PREFIXES = (("4970", 16), ("4973", 16), ("5132", 16), ("5355", 16), ("4556", 16), ("3782", 15))
# Type allocation codes (first 8 IMEI digits) of common handsets (Samsung, Apple, Xiaomi).
IMEI_TACS = ("35332811", "35391110", "35875311", "86769304", "35404411", "35290611")
# OUIs (first 3 MAC bytes) of Apple, Samsung, Huawei, Xiaomi devices.
MAC_OUIS = ("f0:18:98", "3c:22:fb", "a4:83:e7", "8c:f5:a3", "00:9a:cd", "64:09:80")
# French banks' codes (établissement): BNP Paribas, Société Générale, Crédit Agricole, La Banque
# Postale, Caisse d'Epargne, LCL.
BANK_CODES = ("30004", "30003", "18206", "20041", "17515", "30002")


def luhn_check_digit(payload: str) -> str:
    """The Luhn check digit to append to the decimal string `payload`."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char)
        if position % 2 == 0:  # doubled: the check digit will shift every position by one
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def email_address(draws: Draws) -> str:
    """A plausible personal e-mail address, e.g. `marie.dupont84@orange.fr`."""
    first, last = draws.pick(FIRST_NAMES), draws.pick(LAST_NAMES)
    style = draws.below(4)
    if style == 0:
        local = f"{first}.{last}"
    elif style == 1:
        local = f"{first}.{last}{draws.between(60, 99)}"
    elif style == 2:
        local = f"{first[0]}{last}"
    else:
        local = f"{first}_{last}{draws.between(1, 999)}"
    return f"{local}@{draws.pick(MAIL_DOMAINS)}"


def mobile_number(draws: Draws) -> str:
    """A French mobile number as ten digits, `06xxxxxxxx` or `07xxxxxxxx`."""
    return f"0{draws.pick('67')}{draws.digits(8)}"


def format_phone(digits10: str, style: int) -> str:
    """`digits10` (`0612345678`) written in one of 6 styles: `+33 6 12 34 56 78`,
    `06.12.34.56.78`, `06-12-34-56-78`, `06 12 34 56 78`, `0612345678`, `+33612345678`."""
    pairs = [digits10[i : i + 2] for i in range(0, 10, 2)]
    national = digits10[1:]
    styles = (
        f"+33 {national[0]} " + " ".join(pairs[1:]),
        ".".join(pairs),
        "-".join(pairs),
        " ".join(pairs),
        digits10,
        f"+33{national}",
    )
    return styles[style % len(styles)]


def card_number(draws: Draws) -> str:
    """A Luhn-valid payment card number, digits only (15 or 16 digits)."""
    prefix, length = draws.pick(CARD_PREFIXES)
    payload = prefix + draws.digits(length - len(prefix) - 1)
    return payload + luhn_check_digit(payload)


def format_card(number: str, style: int) -> str:
    """`number` contiguous, in groups of 4 separated by spaces, or by dashes."""
    if style % 3 == 0:
        return number
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    return (" " if style % 3 == 1 else "-").join(groups)


def rib_key(bank: str, branch: str, account: str) -> str:
    """The French RIB key of a numeric bank code, branch code and account number."""
    return f"{97 - (89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97:02d}"


def iban_fr(draws: Draws) -> str:
    """A French IBAN (27 chars, mod-97 valid, RIB key valid, hence `FR76...`), no spaces."""
    bank, branch, account = draws.pick(BANK_CODES), draws.digits(5), draws.digits(11)
    bban = bank + branch + account + rib_key(bank, branch, account)
    # Check digits: move "FR00" to the end, letters to numbers (F=15, R=27), mod 97.
    check = 98 - int(bban + "152700") % 97
    return f"FR{check:02d}{bban}"


def format_iban(iban: str, spaced: bool) -> str:
    """`iban` as is or in the printed form of groups of 4 (`FR76 3000 4000 ...`)."""
    if not spaced:
        return iban
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def imei(draws: Draws) -> str:
    """A Luhn-valid 15-digit IMEI with a real handset TAC."""
    payload = draws.pick(IMEI_TACS) + draws.digits(6)
    return payload + luhn_check_digit(payload)


def mac_address(draws: Draws) -> str:
    """A MAC address with a real device-maker OUI, lower-case, colon-separated."""
    tail = draws.hex(3)
    return f"{draws.pick(MAC_OUIS)}:{tail[0:2]}:{tail[2:4]}:{tail[4:6]}"
