"""Country, region and city of a MaxMind DB data record, read straight from the data section.

`maxminddb`'s reader decodes a whole record into Python dicts: for GeoLite2 City that is the
names of the city, country, continent and subdivisions in eight languages, the location, the
postal code... ~15-20 µs per record, of which the chain needs three strings. `PlaceDecoder`
walks the record's encoding (https://maxmind.github.io/MaxMind-DB/, "Output Data Section")
and reads only `country.iso_code`, `subdivisions[0].iso_code` (else its English name) and
`city.names.en`. Writers store shared structures once and point at them (every record of a
city points at the same city map), so each of those three parts is also decoded once per
distinct value and then found by its offset.

The answer is the one `anonymizers.ip` derives from the reader's full decode (a test compares
both on every record of the bundled database): anything the decoder does not expect (a data
type it does not know, an offset out of range) raises `UnsupportedRecord`, and the caller
falls back to the reader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

_POINTER: Final = 1
_STRING: Final = 2
_MAP: Final = 7
_ARRAY: Final = 11
_CONTAINER: Final = 12
_END_MARKER: Final = 13
_BOOLEAN: Final = 14
_FLOAT: Final = 15
_POINTER_BASES: Final = (0, 2048, 526_336, 0)
"""Added to a pointer's value by its size class (the spec's 2.0 pointer encoding)."""
_MAX_NESTING: Final = 32

Place = tuple[str | None, str | None, str | None]
UNKNOWN: Final[Place] = (None, None, None)


class UnsupportedRecord(Exception):
    """The record uses an encoding the decoder does not read (the caller falls back)."""


class PlaceDecoder:
    """(country ISO code, region, city) of the record at an offset of `data`, the database's
    data section (the bytes after the search tree and its 16-byte separator).

    Region is the first subdivision's ISO code, else its English name (DB-IP lite has no
    codes); city is the city's English name; each None when absent or not a string. A
    record that is not a map has no place. Not thread-safe (plain dict caches).
    """

    __slots__ = ("_cities", "_countries", "_data", "_keys", "_regions")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._keys: dict[int, str | None] = {}
        self._countries: dict[int, str | None] = {}
        self._regions: dict[int, str | None] = {}
        self._cities: dict[int, str | None] = {}

    def __len__(self) -> int:
        return len(self._data)

    def place(self, offset: int) -> Place:
        """The place of the record at `offset`; `UnsupportedRecord` if it cannot be read."""
        try:
            return self._place(offset)
        except IndexError as exc:
            raise UnsupportedRecord("offset out of the data section") from exc
        except UnicodeDecodeError as exc:
            raise UnsupportedRecord("a string is not UTF-8") from exc

    def _place(self, offset: int) -> Place:
        at, _ = self._resolve(offset)
        kind, size, position = self._head(at)
        if kind != _MAP:
            return UNKNOWN
        country = region = city = None
        for _ in range(size):
            key = self._key(position)
            position = self._skip(position, 0)
            value, after = self._resolve(position)
            if key == "country":
                country = self._part(self._countries, value, _country)
            elif key == "subdivisions":
                region = self._part(self._regions, value, _region)
            elif key == "city":
                city = self._part(self._cities, value, _city)
            position = after if after >= 0 else self._skip(position, 0)
        return country, region, city

    # ------------------------------------------------------------------ the three parts
    def _part(self, cache: dict[int, str | None], offset: int, read: _Reader) -> str | None:
        if offset in cache:
            return cache[offset]
        found = read(self, offset)
        cache[offset] = found
        return found

    def field(self, offset: int, name: str) -> int:
        """Offset of the value of key `name` in the map at `offset` (pointers followed);
        -1 when the value there is not a map or has no such key."""
        kind, size, position = self._head(offset)
        if kind != _MAP:
            return -1
        for _ in range(size):
            key = self._key(position)
            position = self._skip(position, 0)
            if key == name:
                return self._resolve(position)[0]
            position = self._skip(position, 0)
        return -1

    def text(self, offset: int) -> str | None:
        """The string at `offset` (pointers followed), None if the value is not a string."""
        if offset < 0:
            return None
        at, _ = self._resolve(offset)
        kind, size, position = self._head(at)
        if kind != _STRING:
            return None
        end = position + size
        if end > len(self._data):
            raise IndexError("string past the end of the data section")
        return self._data[position:end].decode("utf-8")

    def first_item(self, offset: int) -> int:
        """Offset of the first element of the array at `offset`; -1 if not a non-empty array."""
        kind, size, position = self._head(offset)
        if kind != _ARRAY or size == 0:
            return -1
        return self._resolve(position)[0]

    # ------------------------------------------------------------------ encoding
    def _key(self, offset: int) -> str | None:
        """A map key (a string, or a pointer to one: then decoded once per offset)."""
        if self._data[offset] >> 5 != _POINTER:
            return self.text(offset)
        at, _ = self._resolve(offset)
        if at in self._keys:
            return self._keys[at]
        key = self.text(at)
        self._keys[at] = key
        return key

    def _head(self, offset: int) -> tuple[int, int, int]:
        """(type, size, offset of the payload) of the value encoded at `offset`.

        For a pointer, size is the control byte's five size bits (read by `_resolve`).
        """
        data = self._data
        control = data[offset]
        offset += 1
        kind = control >> 5
        if kind == 0:
            kind = 7 + data[offset]
            offset += 1
            if kind <= _MAP or kind > _FLOAT or kind in (_CONTAINER, _END_MARKER):
                raise UnsupportedRecord(f"data type {kind}")
        size = control & 0x1F
        if kind == _POINTER or size < 29:
            return kind, size, offset
        if size == 29:
            return kind, 29 + data[offset], offset + 1
        if size == 30:
            return kind, 285 + (data[offset] << 8 | data[offset + 1]), offset + 2
        extra = data[offset] << 16 | data[offset + 1] << 8 | data[offset + 2]
        return kind, 65_821 + extra, offset + 3

    def _resolve(self, offset: int) -> tuple[int, int]:
        """(offset of the value, offset after the pointer) when a pointer is at `offset`,
        else (`offset`, -1)."""
        data = self._data
        control = data[offset]
        if control >> 5 != _POINTER:
            return offset, -1
        size = control & 0x1F
        length = (size >> 3) & 0x3
        value = 0 if length == 3 else size & 0x7
        for index in range(offset + 1, offset + 2 + length):
            value = value << 8 | data[index]
        target = value + _POINTER_BASES[length]
        if data[target] >> 5 == _POINTER:
            raise UnsupportedRecord("a pointer to a pointer")
        return target, offset + 2 + length

    def _skip(self, offset: int, depth: int) -> int:
        """The offset after the value encoded at `offset` (a pointer: after the pointer)."""
        if depth > _MAX_NESTING:
            raise UnsupportedRecord("nesting too deep")
        kind, size, position = self._head(offset)
        if kind == _POINTER:
            return position + 1 + ((size >> 3) & 0x3)
        if kind == _MAP:
            for _ in range(2 * size):
                position = self._skip(position, depth + 1)
            return position
        if kind == _ARRAY:
            for _ in range(size):
                position = self._skip(position, depth + 1)
            return position
        if kind == _BOOLEAN:
            return position
        return position + size


_Reader = Callable[[PlaceDecoder, int], "str | None"]


def _country(decoder: PlaceDecoder, offset: int) -> str | None:
    return decoder.text(decoder.field(offset, "iso_code"))


def _region(decoder: PlaceDecoder, offset: int) -> str | None:
    first = decoder.first_item(offset)
    if first < 0:
        return None
    code = decoder.text(decoder.field(first, "iso_code"))
    if code is not None:
        return code
    return _english(decoder, first)


def _city(decoder: PlaceDecoder, offset: int) -> str | None:
    return _english(decoder, offset)


def _english(decoder: PlaceDecoder, offset: int) -> str | None:
    names = decoder.field(offset, "names")
    return None if names < 0 else decoder.text(decoder.field(names, "en"))
