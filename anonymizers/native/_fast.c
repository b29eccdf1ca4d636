/* anonymizers.native._fast: the chain's C helpers, the fast twin of anonymizers/native/slow.py
 * (anonymizers/native/__init__.py chooses one).
 *
 * FingerprintTable: a bounded memo table for str keys that stores no key.
 *
 * The chain's memos are mostly look-ups of raw identifiers and IPs in tables of 65,536 to
 * 262,144 entries. As dicts each hit reads, one after the other, the dict's index, its
 * entry, the stored key object (to compare it) and the value object: four or five cache
 * misses, each ~200 ns when the machine's memory is busy. This table keeps, per entry,
 * a 128-bit keyed fingerprint of the key (SipHash-2-4 with a 128-bit output, under a random
 * key per table) and the value itself, 32 bytes, two entries per 64-byte bucket: a hit is
 * one cache line. The raw key is never stored, so the table holds no raw identifier.
 *
 * Two different keys share a fingerprint with probability ~n / 2^127 per look-up (n
 * entries): the same order of risk the pseudonyms themselves accept (128 bits).
 *
 * Values, fixed per table (`kind`):
 *   KIND_OBJECT    any object, held by reference (the table is not tracked by the garbage
 *                  collector: values must never refer back to it, as the chain's tuples of
 *                  strings, numbers and tuples cannot; such tuples are untracked on storing);
 *   KIND_PSEUDONYM a 22-character base64url text (16 bytes, as EpochKey.pseudonym makes),
 *                  stored as its 16 bytes and written out again on each hit;
 *   KIND_U64       an int in [0, 2**64), stored inline.
 *
 * Bounded: a key's bucket is chosen by its fingerprint; a bucket holds two entries, the
 * most recently used first; a new key in a full bucket evicts the least recently used one.
 * `clear()` zeroes every bucket (EpochKey.destroy relies on it).
 *
 * Not thread-safe beyond the GIL (every method holds it), like a dict.
 *
 * EventClock: the event time's fast path (anonymizers.event_time.EventTime): the collectors'
 * usual "YYYY-MM-DDTHH:MM:SS[.fff]Z" read without slices, its minute found in one line.
 *
 * ipv4_value and Ipv4Ranges: a new IPv4 address's reading and its search in the flat index
 * of the geolocation database (anonymizers.ip, anonymizers.geo.index): ~2 µs of Python per
 * new address (a split, four int(), bisect over an array) in a few hundred instructions.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { KIND_OBJECT = 0, KIND_PSEUDONYM = 1, KIND_U64 = 2 };

#define PSEUDONYM_CHARS 22
#define PSEUDONYM_BYTES 16
#define BUCKET_BYTES 64

typedef struct {
    uint64_t hi, lo; /* the fingerprint; 0, 0 is an empty slot (lo always has bit 0 set) */
    union {
        PyObject *obj;
        uint64_t u64;
        unsigned char raw[16];
    } v;
} Slot;

typedef struct {
    Slot s[2]; /* s[0] the most recently used */
} Bucket;

typedef struct {
    PyObject_HEAD
    void *memory;      /* what was allocated; `buckets` is it aligned to 64 bytes */
    Bucket *buckets;
    size_t mask;       /* buckets - 1 */
    Py_ssize_t count;  /* occupied slots */
    int kind;
    uint64_t k0, k1;   /* SipHash key */
} Table;

/* ------------------------------------------------------------------ SipHash-2-4, 128 bits */
/* The reference algorithm (https://github.com/veorq/SipHash), 128-bit output. */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                        \
    do {                                                                                \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                       \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                          \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                          \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                       \
    } while (0)

static inline uint64_t
load_le64(const unsigned char *p)
{
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) |
           ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
}

static void
siphash128(const unsigned char *in, size_t inlen, uint64_t k0, uint64_t k1, uint64_t out[2])
{
    uint64_t v0 = UINT64_C(0x736f6d6570736575) ^ k0;
    uint64_t v1 = UINT64_C(0x646f72616e646f6d) ^ k1;
    uint64_t v2 = UINT64_C(0x6c7967656e657261) ^ k0;
    uint64_t v3 = UINT64_C(0x7465646279746573) ^ k1;
    const unsigned char *end = in + inlen - (inlen % 8);
    uint64_t b = ((uint64_t)inlen) << 56;
    v1 ^= 0xee;
    for (; in != end; in += 8) {
        uint64_t m = load_le64(in);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    switch (inlen & 7) {
    case 7: b |= ((uint64_t)in[6]) << 48; /* fall through */
    case 6: b |= ((uint64_t)in[5]) << 40; /* fall through */
    case 5: b |= ((uint64_t)in[4]) << 32; /* fall through */
    case 4: b |= ((uint64_t)in[3]) << 24; /* fall through */
    case 3: b |= ((uint64_t)in[2]) << 16; /* fall through */
    case 2: b |= ((uint64_t)in[1]) << 8;  /* fall through */
    case 1: b |= ((uint64_t)in[0]); break;
    case 0: break;
    }
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xee;
    SIPROUND; SIPROUND; SIPROUND; SIPROUND;
    out[0] = v0 ^ v1 ^ v2 ^ v3;
    v1 ^= 0xdd;
    SIPROUND; SIPROUND; SIPROUND; SIPROUND;
    out[1] = v0 ^ v1 ^ v2 ^ v3;
}

/* The fingerprint of a str key. CPython stores a str in the narrowest of three widths
 * (`kind` 1, 2 or 4 bytes per character), so equal strings have equal kind and bytes; the
 * kind goes into the hash key so that different strings with the same bytes differ. */
static int
fingerprint(Table *self, PyObject *key, uint64_t out[2])
{
    if (!PyUnicode_Check(key)) {
        PyErr_Format(PyExc_TypeError, "FingerprintTable keys are str, not %.100s",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(key) < 0) {
        return -1;
    }
#endif
    int kind = PyUnicode_KIND(key);
    size_t size = (size_t)PyUnicode_GET_LENGTH(key) * (size_t)kind;
    siphash128((const unsigned char *)PyUnicode_DATA(key), size, self->k0,
               self->k1 ^ (uint64_t)kind, out);
    out[1] |= 1; /* never 0, 0: that marks an empty slot */
    return 0;
}

/* ------------------------------------------------------------------ values */

static const char B64URL[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int
b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

static void
encode_pseudonym(const unsigned char raw[PSEUDONYM_BYTES], Py_UCS1 *out)
{
    int o = 0;
    for (int i = 0; i < 15; i += 3) {
        uint32_t n = ((uint32_t)raw[i] << 16) | ((uint32_t)raw[i + 1] << 8) | raw[i + 2];
        out[o++] = (Py_UCS1)B64URL[(n >> 18) & 63];
        out[o++] = (Py_UCS1)B64URL[(n >> 12) & 63];
        out[o++] = (Py_UCS1)B64URL[(n >> 6) & 63];
        out[o++] = (Py_UCS1)B64URL[n & 63];
    }
    uint32_t last = (uint32_t)raw[15] << 16;
    out[o++] = (Py_UCS1)B64URL[(last >> 18) & 63];
    out[o++] = (Py_UCS1)B64URL[(last >> 12) & 63];
}

/* 22 base64url characters to 16 bytes; only the text `encode_pseudonym` would write back. */
static int
decode_pseudonym(PyObject *value, unsigned char raw[PSEUDONYM_BYTES])
{
    if (!PyUnicode_Check(value) || PyUnicode_GET_LENGTH(value) != PSEUDONYM_CHARS ||
        PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND) {
        goto bad;
    }
    const Py_UCS1 *text = PyUnicode_1BYTE_DATA(value);
    int digits[PSEUDONYM_CHARS];
    for (int i = 0; i < PSEUDONYM_CHARS; i++) {
        digits[i] = b64url_value(text[i]);
        if (digits[i] < 0) {
            goto bad;
        }
    }
    /* The last character carries 2 bits of the 16th byte; its 4 low bits must be 0. */
    if (digits[21] & 15) {
        goto bad;
    }
    int o = 0;
    for (int i = 0; i < 20; i += 4) {
        uint32_t n = ((uint32_t)digits[i] << 18) | ((uint32_t)digits[i + 1] << 12) |
                     ((uint32_t)digits[i + 2] << 6) | (uint32_t)digits[i + 3];
        raw[o++] = (unsigned char)(n >> 16);
        raw[o++] = (unsigned char)(n >> 8);
        raw[o++] = (unsigned char)n;
    }
    raw[15] = (unsigned char)((digits[20] << 2) | (digits[21] >> 4));
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError,
                    "a pseudonym table holds 22-character base64url pseudonyms only");
    return -1;
}

static PyObject *
slot_value(Table *self, Slot *slot)
{
    switch (self->kind) {
    case KIND_PSEUDONYM: {
        PyObject *text = PyUnicode_New(PSEUDONYM_CHARS, 127);
        if (text != NULL) {
            encode_pseudonym(slot->v.raw, PyUnicode_1BYTE_DATA(text));
        }
        return text;
    }
    case KIND_U64:
        return PyLong_FromUnsignedLongLong(slot->v.u64);
    default:
        return Py_NewRef(slot->v.obj);
    }
}

/* Stop the collector tracking `obj` when it is a tuple holding only objects it does not
 * track (strings, numbers, such tuples, looked at down to a few levels): such a tuple can be
 * in no reference cycle, and CPython's collector would untrack it at its next pass anyway,
 * after walking it. The IP memo's entries are such tuples, thousands a minute: untracked
 * here, no young collection walks them. Returns whether `obj` is (still) tracked. */
static int
untrack_if_acyclic(PyObject *obj, int depth)
{
    if (!PyObject_GC_IsTracked(obj)) {
        return 0;
    }
    if (!PyTuple_CheckExact(obj) || depth > 3) {
        return 1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(obj); i++) {
        if (untrack_if_acyclic(PyTuple_GET_ITEM(obj, i), depth + 1)) {
            return 1;
        }
    }
    PyObject_GC_UnTrack(obj);
    return 0;
}

/* Fill `slot`'s value from `value` (a new reference is taken for objects). */
static int
set_value(Table *self, Slot *slot, PyObject *value)
{
    switch (self->kind) {
    case KIND_PSEUDONYM:
        return decode_pseudonym(value, slot->v.raw);
    case KIND_U64: {
        if (!PyLong_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "a u64 table holds ints only");
            return -1;
        }
        unsigned long long n = PyLong_AsUnsignedLongLong(value);
        if (n == (unsigned long long)-1 && PyErr_Occurred()) {
            return -1;
        }
        slot->v.u64 = (uint64_t)n;
        return 0;
    }
    default:
        untrack_if_acyclic(value, 0);
        slot->v.obj = Py_NewRef(value);
        return 0;
    }
}

static void
release_slot(Table *self, Slot *slot)
{
    if (self->kind == KIND_OBJECT && (slot->hi | slot->lo)) {
        Py_CLEAR(slot->v.obj);
    }
    memset(slot, 0, sizeof(Slot));
}

static inline Bucket *
bucket_of(Table *self, const uint64_t fp[2])
{
    return &self->buckets[fp[0] & self->mask];
}

/* ------------------------------------------------------------------ the type */

static void
table_clear_all(Table *self)
{
    if (self->buckets == NULL) {
        return;
    }
    if (self->kind == KIND_OBJECT) {
        /* As on eviction: each entry leaves the table before its value is released. */
        for (size_t b = 0; b <= self->mask; b++) {
            for (int i = 0; i < 2; i++) {
                Slot *slot = &self->buckets[b].s[i];
                if (slot->hi | slot->lo) {
                    Slot taken = *slot;
                    memset(slot, 0, sizeof(Slot));
                    self->count -= 1;
                    release_slot(self, &taken);
                }
            }
        }
    }
    memset(self->buckets, 0, (self->mask + 1) * sizeof(Bucket));
    self->count = 0;
}

static int
table_init(Table *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"capacity", "kind", "seed", NULL};
    Py_ssize_t capacity;
    int kind;
    Py_buffer seed;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "niy*", kwlist, &capacity, &kind, &seed)) {
        return -1;
    }
    if (seed.len != 16) {
        PyBuffer_Release(&seed);
        PyErr_SetString(PyExc_ValueError, "seed must be 16 bytes");
        return -1;
    }
    uint64_t k0 = load_le64((const unsigned char *)seed.buf);
    uint64_t k1 = load_le64((const unsigned char *)seed.buf + 8);
    PyBuffer_Release(&seed);
    if (kind != KIND_OBJECT && kind != KIND_PSEUDONYM && kind != KIND_U64) {
        PyErr_Format(PyExc_ValueError, "unknown kind %d", kind);
        return -1;
    }
    if (capacity < 2 || capacity > ((Py_ssize_t)1 << 32)) {
        PyErr_SetString(PyExc_ValueError, "capacity must be in [2, 2**32]");
        return -1;
    }
    if (self->buckets != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FingerprintTable is already initialised");
        return -1;
    }
    size_t buckets = 1;
    while (buckets * 2 < (size_t)capacity) {
        buckets <<= 1;
    }
    /* One spare bucket to align the table on a cache line; calloc maps zeroed pages lazily. */
    void *memory = PyMem_RawCalloc(buckets + 1, sizeof(Bucket));
    if (memory == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    uintptr_t aligned = ((uintptr_t)memory + BUCKET_BYTES - 1) & ~(uintptr_t)(BUCKET_BYTES - 1);
    self->memory = memory;
    self->buckets = (Bucket *)aligned;
    self->mask = buckets - 1;
    self->count = 0;
    self->kind = kind;
    self->k0 = k0;
    self->k1 = k1;
    return 0;
}

static void
table_dealloc(Table *self)
{
    table_clear_all(self);
    PyMem_RawFree(self->memory);
    self->memory = NULL;
    self->buckets = NULL;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
ready(Table *self)
{
    if (self->buckets == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FingerprintTable is not initialised");
        return 0;
    }
    return 1;
}

/* The slot holding `fp`, moved to the front of its bucket, or NULL. */
static Slot *
find(Table *self, const uint64_t fp[2])
{
    Bucket *bucket = bucket_of(self, fp);
    if (bucket->s[0].hi == fp[0] && bucket->s[0].lo == fp[1]) {
        return &bucket->s[0];
    }
    if (bucket->s[1].hi == fp[0] && bucket->s[1].lo == fp[1]) {
        Slot used = bucket->s[1];
        bucket->s[1] = bucket->s[0];
        bucket->s[0] = used;
        return &bucket->s[0];
    }
    return NULL;
}

static PyObject *
table_get(Table *self, PyObject *key)
{
    uint64_t fp[2];
    if (!ready(self) || fingerprint(self, key, fp) < 0) {
        return NULL;
    }
    Slot *slot = find(self, fp);
    if (slot == NULL) {
        Py_RETURN_NONE;
    }
    return slot_value(self, slot);
}

static int
table_store(Table *self, PyObject *key, PyObject *value)
{
    uint64_t fp[2];
    if (!ready(self) || fingerprint(self, key, fp) < 0) {
        return -1;
    }
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "FingerprintTable entries cannot be deleted");
        return -1;
    }
    if (value == Py_None) {
        PyErr_SetString(PyExc_ValueError, "None is what get() returns for a miss");
        return -1;
    }
    Slot fresh;
    memset(&fresh, 0, sizeof(Slot));
    if (set_value(self, &fresh, value) < 0) {
        return -1;
    }
    fresh.hi = fp[0];
    fresh.lo = fp[1];
    Slot *slot = find(self, fp);
    if (slot != NULL) {
        Slot replaced = *slot;
        *slot = fresh;
        release_slot(self, &replaced);
        return 0;
    }
    Bucket *bucket = bucket_of(self, fp);
    Slot evicted = bucket->s[1];
    bucket->s[1] = bucket->s[0];
    bucket->s[0] = fresh;
    self->count += 1;
    if (evicted.hi | evicted.lo) {
        self->count -= 1;
        /* The table is consistent before the evicted value goes (its deallocation may run
         * arbitrary code). */
        release_slot(self, &evicted);
    }
    return 0;
}

static PyObject *
table_getitem(Table *self, PyObject *key)
{
    PyObject *value = table_get(self, key);
    if (value == Py_None) {
        Py_DECREF(value);
        PyErr_SetString(PyExc_KeyError, "not in the table"); /* never the key: it may be an identifier */
        return NULL;
    }
    return value;
}

static int
table_contains(Table *self, PyObject *key)
{
    uint64_t fp[2];
    if (!ready(self) || fingerprint(self, key, fp) < 0) {
        return -1;
    }
    Bucket *bucket = bucket_of(self, fp);
    return (bucket->s[0].hi == fp[0] && bucket->s[0].lo == fp[1]) ||
           (bucket->s[1].hi == fp[0] && bucket->s[1].lo == fp[1]);
}

static Py_ssize_t
table_len(Table *self)
{
    return self->count;
}

static PyObject *
table_prefetch(Table *self, PyObject *key)
{
    uint64_t fp[2];
    if (!ready(self) || fingerprint(self, key, fp) < 0) {
        return NULL;
    }
    __builtin_prefetch(bucket_of(self, fp), 1, 3);
    Py_RETURN_NONE;
}

static PyObject *
table_clear(Table *self, PyObject *Py_UNUSED(ignored))
{
    table_clear_all(self);
    Py_RETURN_NONE;
}

static PyObject *
table_capacity(Table *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(self->buckets == NULL ? 0 : (self->mask + 1) * 2);
}

static PyObject *
table_kind(Table *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->kind);
}

static PyObject *
table_repr(Table *self)
{
    /* Never the entries: only their number. */
    return PyUnicode_FromFormat("FingerprintTable(kind=%d, entries=%zd)", self->kind,
                                self->count);
}

static PyMethodDef table_methods[] = {
    {"get", (PyCFunction)table_get, METH_O,
     "get(key) -> the value stored for key, or None (and the entry becomes its bucket's "
     "most recent)"},
    {"prefetch", (PyCFunction)table_prefetch, METH_O,
     "prefetch(key): ask the CPU to fetch key's bucket, for a look-up soon after"},
    {"clear", (PyCFunction)table_clear, METH_NOARGS, "clear(): zero every entry"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef table_getset[] = {
    {"capacity", (getter)table_capacity, NULL, "entries the table can hold", NULL},
    {"kind", (getter)table_kind, NULL, "the kind of values (KIND_*)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMappingMethods table_as_mapping = {
    .mp_length = (lenfunc)table_len,
    .mp_subscript = (binaryfunc)table_getitem,
    .mp_ass_subscript = (objobjargproc)table_store,
};

static PySequenceMethods table_as_sequence = {
    .sq_contains = (objobjproc)table_contains,
};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "anonymizers.native._fast.FingerprintTable",
    .tp_doc = PyDoc_STR(
        "FingerprintTable(capacity, kind, seed): a bounded str-keyed memo table storing a "
        "128-bit keyed fingerprint of each key (SipHash-2-4 under the 16-byte seed), never "
        "the key; two entries per 64-byte bucket, least recently used evicted."),
    .tp_basicsize = sizeof(Table),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)table_init,
    .tp_dealloc = (destructor)table_dealloc,
    .tp_repr = (reprfunc)table_repr,
    .tp_methods = table_methods,
    .tp_getset = table_getset,
    .tp_as_mapping = &table_as_mapping,
    .tp_as_sequence = &table_as_sequence,
};

/* ------------------------------------------------------------------ event time */

static inline int
is_digit(Py_UCS1 c)
{
    return c >= '0' && c <= '9';
}

/* Reads "YYYY-MM-DDTHH:MM:SSZ" or "YYYY-MM-DDTHH:MM:SS.fZ" with 1 to 9 fraction digits
 * (ASCII digits, "T" and "Z" upper case, second 00-59): 1 with the digits of the date and
 * time in `parts` (year, month, day, hour, minute, second; not checked as a date: the
 * clock only answers for minutes the full parser validated), 0 for anything else. */
static int
read_usual_time(PyObject *raw, int parts[6])
{
    if (!PyUnicode_Check(raw)) {
        return 0;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(raw) < 0) {
        PyErr_Clear();
        return 0;
    }
#endif
    Py_ssize_t size = PyUnicode_GET_LENGTH(raw);
    if (!PyUnicode_IS_ASCII(raw) || (size != 20 && (size < 22 || size > 30))) {
        return 0;
    }
    const Py_UCS1 *c = PyUnicode_1BYTE_DATA(raw);
    static const int starts[] = {0, 5, 8, 11, 14, 17};
    static const int widths[] = {4, 2, 2, 2, 2, 2};
    for (int i = 0; i < 6; i++) {
        int value = 0;
        for (int j = starts[i]; j < starts[i] + widths[i]; j++) {
            if (!is_digit(c[j])) {
                return 0;
            }
            value = value * 10 + (c[j] - '0');
        }
        parts[i] = value;
    }
    if (c[4] != '-' || c[7] != '-' || c[10] != 'T' || c[13] != ':' || c[16] != ':' ||
        parts[5] > 59 || c[size - 1] != 'Z') {
        return 0;
    }
    if (size > 20) {
        if (c[19] != '.') {
            return 0;
        }
        for (Py_ssize_t i = 20; i < size - 1; i++) {
            if (!is_digit(c[i])) {
                return 0;
            }
        }
    }
    return 1;
}

/* Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil); defined, if meaningless, for any month and day digits. */
static long long
days_from_civil(long long year, unsigned month, unsigned day)
{
    year -= month <= 2;
    long long era = (year >= 0 ? year : year - 399) / 400;
    unsigned year_of_era = (unsigned)(year - era * 400);
    unsigned day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    unsigned day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + (long long)day_of_era - 719468;
}

/* The inverse for the dates it gives: (year, month, day) of a day count from 1970-01-01. */
static void
civil_from_days(long long days, long long *year, unsigned *month, unsigned *day)
{
    days += 719468;
    long long era = (days >= 0 ? days : days - 146096) / 146097;
    unsigned day_of_era = (unsigned)(days - era * 146097);
    unsigned year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    unsigned day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    unsigned shifted_month = (5 * day_of_year + 2) / 153;
    *day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    *month = shifted_month < 10 ? shifted_month + 3 : shifted_month - 9;
    *year = (long long)year_of_era + era * 400 + (*month <= 2);
}

static inline long long
minute_number(const int parts[6])
{
    return (((parts[0] * 100LL + parts[1]) * 100 + parts[2]) * 100 + parts[3]) * 100 + parts[4];
}

static inline long long
minutes_since_1970(const int parts[6])
{
    return days_from_civil(parts[0], (unsigned)parts[1], (unsigned)parts[2]) * 1440 +
           parts[3] * 60 + parts[4];
}

static inline long long
floor_div(long long a, long long b)
{
    long long q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* EventClock(capacity, rotation): the event time's fast path (anonymizers.event_time.EventTime).
 * It holds minutes the full parser validated, each under its minute count since 1970 modulo
 * the capacity (consecutive minutes never collide: a worker's events of `capacity` minutes
 * all stay), with the minute's number YYYYMMDDHHMM (what the text says), its first second,
 * its day text and its epoch. read(raw) answers (epoch, text to the second, day) for the
 * collectors' usual form in a known minute, None for anything else (then the full parser
 * reads it, and puts its minute). One cache line, where dicts read the key and value
 * objects of a minute at each event. */
typedef struct {
    long long number; /* -1: empty */
    long long base;
    PyObject *epoch;
    PyObject *day;
} ClockEntry;

typedef struct {
    PyObject_HEAD
    ClockEntry *entries;
    long long mask;
    long long rotation;
    Py_ssize_t used;
} ClockObject;

static void
clock_drop(ClockEntry *entry)
{
    PyObject *epoch = entry->epoch, *day = entry->day;
    entry->number = -1;
    entry->epoch = NULL;
    entry->day = NULL;
    Py_XDECREF(epoch);
    Py_XDECREF(day);
}

static void
clock_clear_all(ClockObject *self)
{
    if (self->entries == NULL) {
        return;
    }
    for (long long i = 0; i <= self->mask; i++) {
        if (self->entries[i].number != -1) {
            clock_drop(&self->entries[i]);
        }
    }
    self->used = 0;
}

static int
clock_init(ClockObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"capacity", "rotation", NULL};
    Py_ssize_t capacity;
    long long rotation;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nL", kwlist, &capacity, &rotation)) {
        return -1;
    }
    if (capacity < 1 || capacity > (1 << 20) || rotation < 1) {
        PyErr_SetString(PyExc_ValueError, "capacity is 1 to 2**20 minutes, rotation >= 1 s");
        return -1;
    }
    Py_ssize_t slots = 1;
    while (slots < capacity) {
        slots <<= 1;
    }
    ClockEntry *entries = PyMem_Calloc((size_t)slots, sizeof(ClockEntry));
    if (entries == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < slots; i++) {
        entries[i].number = -1;
    }
    clock_clear_all(self);
    PyMem_Free(self->entries);
    self->entries = entries;
    self->mask = slots - 1;
    self->rotation = rotation;
    self->used = 0;
    return 0;
}

static void
clock_dealloc(ClockObject *self)
{
    clock_clear_all(self);
    PyMem_Free(self->entries);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
clock_ready(ClockObject *self)
{
    if (self->entries == NULL) {
        PyErr_SetString(PyExc_ValueError, "EventClock is not initialised");
        return 0;
    }
    return 1;
}

/* put(text, base, day, epoch): `text` is the minute "YYYY-MM-DDTHH:MM:" the full parser
 * validated, `base` its first second since 1970 (UTC), `day` "YYYY-MM-DD", `epoch` its key
 * epoch. Refused (ValueError) unless text and base name the same minute. */
static PyObject *
clock_put(ClockObject *self, PyObject *args)
{
    PyObject *text, *day, *epoch;
    long long base;
    if (!clock_ready(self) ||
        !PyArg_ParseTuple(args, "ULUO!", &text, &base, &day, &PyLong_Type, &epoch)) {
        return NULL;
    }
    /* The text of the minute with its first second and "Z": the form read() reads. */
    PyObject *first = PyUnicode_FromFormat("%U00Z", text);
    if (first == NULL) {
        return NULL;
    }
    int parts[6];
    int usual = PyUnicode_GET_LENGTH(text) == 17 && read_usual_time(first, parts);
    Py_DECREF(first);
    /* The date and time `base` names, written as the text writes them. */
    long long minutes = floor_div(base, 60), year;
    unsigned month, day_of_month;
    civil_from_days(floor_div(minutes, 1440), &year, &month, &day_of_month);
    long long of_day = minutes - floor_div(minutes, 1440) * 1440;
    int named[6] = {(int)year, (int)month, (int)day_of_month, (int)(of_day / 60),
                    (int)(of_day % 60), 0};
    if (!usual || minutes * 60 != base || year < 1000 || year > 9999 ||
        minute_number(named) != minute_number(parts)) {
        PyErr_SetString(PyExc_ValueError, "put() takes a minute's text and its first second");
        return NULL;
    }
    ClockEntry *entry = &self->entries[minutes_since_1970(parts) & self->mask];
    if (entry->number == -1) {
        self->used++;
    } else {
        clock_drop(entry);
    }
    entry->number = minute_number(parts);
    entry->base = base;
    entry->epoch = Py_NewRef(epoch);
    entry->day = Py_NewRef(day);
    Py_RETURN_NONE;
}

static PyObject *
clock_read(ClockObject *self, PyObject *raw)
{
    if (!clock_ready(self)) {
        return NULL;
    }
    int parts[6];
    if (!read_usual_time(raw, parts)) {
        Py_RETURN_NONE;
    }
    const ClockEntry *entry = &self->entries[minutes_since_1970(parts) & self->mask];
    if (entry->number != minute_number(parts)) {
        Py_RETURN_NONE;
    }
    PyObject *epoch;
    if (self->rotation % 60 == 0) {
        /* Minute-aligned epochs: the whole minute shares its epoch. */
        epoch = Py_NewRef(entry->epoch);
    } else {
        epoch = PyLong_FromLongLong(floor_div(entry->base + parts[5], self->rotation));
        if (epoch == NULL) {
            return NULL;
        }
    }
    PyObject *text;
    if (PyUnicode_GET_LENGTH(raw) == 20) {
        text = Py_NewRef(raw);
    } else {
        text = PyUnicode_New(20, 127);
        if (text == NULL) {
            Py_DECREF(epoch);
            return NULL;
        }
        Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
        memcpy(out, PyUnicode_1BYTE_DATA(raw), 19);
        out[19] = 'Z';
    }
    PyObject *result = PyTuple_New(3);
    if (result == NULL) {
        Py_DECREF(epoch);
        Py_DECREF(text);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, epoch);
    PyTuple_SET_ITEM(result, 1, text);
    PyTuple_SET_ITEM(result, 2, Py_NewRef(entry->day));
    return result;
}

static PyObject *
clock_clear(ClockObject *self, PyObject *Py_UNUSED(ignored))
{
    clock_clear_all(self);
    Py_RETURN_NONE;
}

static Py_ssize_t
clock_len(ClockObject *self)
{
    return self->used;
}

static PyObject *
clock_capacity(ClockObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->entries == NULL ? 0 : self->mask + 1);
}

static PyMethodDef clock_methods[] = {
    {"read", (PyCFunction)clock_read, METH_O,
     "read(raw) -> (epoch, \"YYYY-MM-DDTHH:MM:SSZ\", \"YYYY-MM-DD\") for "
     "\"YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z\" (ASCII, second 00-59) in a minute put before, "
     "else None"},
    {"put", (PyCFunction)clock_put, METH_VARARGS,
     "put(minute_text, base, day, epoch): a minute the full parser validated"},
    {"clear", (PyCFunction)clock_clear, METH_NOARGS, "clear(): forget every minute"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef clock_getset[] = {
    {"capacity", (getter)clock_capacity, NULL, "minutes the clock can hold", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods clock_as_sequence = {
    .sq_length = (lenfunc)clock_len,
};

static PyTypeObject ClockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "anonymizers.native._fast.EventClock",
    .tp_basicsize = sizeof(ClockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "EventClock(capacity, rotation): the event time's fast path",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)clock_init,
    .tp_dealloc = (destructor)clock_dealloc,
    .tp_methods = clock_methods,
    .tp_getset = clock_getset,
    .tp_as_sequence = &clock_as_sequence,
};

/* ------------------------------------------------------------------ output dicts */

/* ------------------------------------------------------------------ IPv4 addresses */

/* ipv4_value(text) -> the value of `text` as a dotted quad: four decimal octets 0-255 of
 * one to three ASCII digits, no leading zero, separated by single dots. -1 when `text` holds
 * any character other than an ASCII digit or a dot (not IPv4: the caller tries IPv6); -2
 * when it holds only those but is not such a quad (malformed: no address). The IPv4 part of
 * anonymizers.ip.parse_ip, which strips the text first; the slow twin's ipv4_value gives the
 * same answers (tests/anonymizers/native/test_native.py runs both). */
static PyObject *
module_ipv4_value(PyObject *Py_UNUSED(module), PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "ipv4_value() takes a str");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) {
        return NULL;
    }
#endif
    /* A wider kind holds a character above U+00FF: not a digit or a dot. */
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND) {
        return PyLong_FromLong(-1);
    }
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    const Py_UCS1 *c = PyUnicode_1BYTE_DATA(text);
    for (Py_ssize_t i = 0; i < size; i++) {
        if (!is_digit(c[i]) && c[i] != '.') {
            return PyLong_FromLong(-1);
        }
    }
    uint32_t value = 0;
    int octets = 0;
    Py_ssize_t i = 0;
    while (1) {
        Py_ssize_t start = i;
        unsigned int octet = 0;
        while (i < size && is_digit(c[i]) && i - start < 3) {
            octet = octet * 10 + (unsigned int)(c[i] - '0');
            i++;
        }
        Py_ssize_t digits = i - start;
        if (digits == 0 || (digits > 1 && c[start] == '0') || octet > 255 ||
            (i < size && is_digit(c[i]))) {
            return PyLong_FromLong(-2);
        }
        value = value << 8 | octet;
        octets++;
        if (octets == 4) {
            break;
        }
        if (i >= size || c[i] != '.') {
            return PyLong_FromLong(-2);
        }
        i++;
    }
    if (i != size) {
        return PyLong_FromLong(-2);
    }
    return PyLong_FromUnsignedLong(value);
}

/* Ipv4Ranges(starts, pointers, blocks): anonymizers.geo.index.Ipv4Index's search, over its
 * three arrays of unsigned 32-bit values (held, not copied): `starts` the sorted first
 * addresses of the networks (starts[0] == 0: the networks cover IPv4), `pointers` their
 * records, `blocks` (65,537 entries) the range of `starts` positions per /16. find(address)
 * is the pointer of the last network starting at or before the address. */
typedef struct {
    PyObject_HEAD
    Py_buffer starts;
    Py_buffer pointers;
    Py_buffer blocks;
    int held; /* buffers acquired so far */
} RangesObject;

#define RANGE_BLOCKS 65536

static void
ranges_release(RangesObject *self)
{
    Py_buffer *views[] = {&self->starts, &self->pointers, &self->blocks};
    for (int i = 0; i < self->held; i++) {
        PyBuffer_Release(views[i]);
    }
    self->held = 0;
}

static int
ranges_view(PyObject *source, Py_buffer *view, const char *name)
{
    if (PyObject_GetBuffer(source, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    const char *format = view->format == NULL ? "B" : view->format;
    if (view->itemsize != 4 || view->ndim != 1 || strchr("IL", format[0]) == NULL ||
        format[1] != '\0') {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s must hold unsigned 32-bit values", name);
        return -1;
    }
    return 0;
}

static int
ranges_init(RangesObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"starts", "pointers", "blocks", NULL};
    PyObject *starts, *pointers, *blocks;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO", kwlist, &starts, &pointers, &blocks)) {
        return -1;
    }
    ranges_release(self);
    if (ranges_view(starts, &self->starts, "starts") < 0) {
        return -1;
    }
    self->held = 1;
    if (ranges_view(pointers, &self->pointers, "pointers") < 0) {
        ranges_release(self);
        return -1;
    }
    self->held = 2;
    if (ranges_view(blocks, &self->blocks, "blocks") < 0) {
        ranges_release(self);
        return -1;
    }
    self->held = 3;
    Py_ssize_t count = self->starts.len / 4;
    const uint32_t *first = self->starts.buf;
    const uint32_t *edges = self->blocks.buf;
    const char *problem = NULL;
    if (count == 0 || self->pointers.len / 4 != count) {
        problem = "starts and pointers must have the same, non-zero length";
    } else if (first[0] != 0) {
        problem = "the first network must start at 0.0.0.0";
    } else if (self->blocks.len / 4 != RANGE_BLOCKS + 1) {
        problem = "blocks must have 65,537 entries";
    } else {
        for (Py_ssize_t i = 1; i < count && problem == NULL; i++) {
            if (first[i] < first[i - 1]) {
                problem = "starts must be sorted";
            }
        }
        for (Py_ssize_t i = 0; i <= RANGE_BLOCKS && problem == NULL; i++) {
            if (edges[i] > (uint64_t)count || (i > 0 && edges[i] < edges[i - 1])) {
                problem = "blocks must be sorted positions within starts";
            }
        }
    }
    if (problem != NULL) {
        ranges_release(self);
        PyErr_SetString(PyExc_ValueError, problem);
        return -1;
    }
    return 0;
}

static void
ranges_dealloc(RangesObject *self)
{
    ranges_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
ranges_find(RangesObject *self, PyObject *arg)
{
    if (self->held != 3) {
        PyErr_SetString(PyExc_ValueError, "Ipv4Ranges is not initialised");
        return NULL;
    }
    unsigned long address = PyLong_AsUnsignedLong(arg);
    if (address == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (address > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "an IPv4 address is 0 to 2**32 - 1");
        return NULL;
    }
    const uint32_t *first = self->starts.buf;
    const uint32_t *edges = self->blocks.buf;
    uint32_t block = (uint32_t)(address >> 16);
    /* bisect_right over starts[lo:hi]: lo ends at the first network starting after the
     * address; the one before it (at least starts[0] == 0) holds the address. */
    Py_ssize_t lo = edges[block], hi = edges[block + 1];
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (address < first[mid]) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    const uint32_t *records = self->pointers.buf;
    return PyLong_FromUnsignedLong(records[lo - 1]);
}

static PyMethodDef ranges_methods[] = {
    {"find", (PyCFunction)ranges_find, METH_O,
     "find(address) -> the record pointer of the network holding the IPv4 address (an int)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RangesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "anonymizers.native._fast.Ipv4Ranges",
    .tp_basicsize = sizeof(RangesObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Ipv4Ranges(starts, pointers, blocks): the flat IPv4 index's search",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ranges_init,
    .tp_dealloc = (destructor)ranges_dealloc,
    .tp_methods = ranges_methods,
};

/* ------------------------------------------------------------------ module */

static PyObject *
module_siphash128(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer data, key;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &key)) {
        return NULL;
    }
    if (key.len != 16) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "key must be 16 bytes");
        return NULL;
    }
    uint64_t out[2];
    siphash128((const unsigned char *)data.buf, (size_t)data.len,
               load_le64((const unsigned char *)key.buf),
               load_le64((const unsigned char *)key.buf + 8), out);
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    unsigned char bytes[16];
    for (int i = 0; i < 8; i++) {
        bytes[i] = (unsigned char)(out[0] >> (8 * i));
        bytes[8 + i] = (unsigned char)(out[1] >> (8 * i));
    }
    return PyBytes_FromStringAndSize((const char *)bytes, 16);
}

static PyMethodDef module_methods[] = {
    {"ipv4_value", module_ipv4_value, METH_O,
     "ipv4_value(text) -> the value of a strict dotted quad; -1 when text holds a character "
     "other than an ASCII digit or a dot, -2 when it holds only those but is malformed"},
    {"siphash128", module_siphash128, METH_VARARGS,
     "siphash128(data, key) -> SipHash-2-4 of data under the 16-byte key, 128-bit output "
     "(16 bytes, as the reference implementation writes them): for tests against its vectors"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "anonymizers.native._fast",
    .m_doc = "The chain's C helpers: fingerprint memo tables, the event time's fast path, "
             "IPv4 reading and index search.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__fast(void)
{
    if (PyType_Ready(&TableType) < 0 ||
        PyType_Ready(&RangesType) < 0 || PyType_Ready(&ClockType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "FingerprintTable", (PyObject *)&TableType) < 0 ||
        PyModule_AddObjectRef(module, "Ipv4Ranges", (PyObject *)&RangesType) < 0 ||
        PyModule_AddObjectRef(module, "EventClock", (PyObject *)&ClockType) < 0 ||
        PyModule_AddIntConstant(module, "KIND_OBJECT", KIND_OBJECT) < 0 ||
        PyModule_AddIntConstant(module, "KIND_PSEUDONYM", KIND_PSEUDONYM) < 0 ||
        PyModule_AddIntConstant(module, "KIND_U64", KIND_U64) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
