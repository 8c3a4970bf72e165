/*
 * otel_ml.processor._fastdecode: OTLP ExportLogsServiceRequest bytes -> prediction and label rows, in one pass over
 * the protobuf wire format, for the records of the common shapes (see decode.py for the contract and the Python
 * path this mirrors).
 *
 * The rule that keeps it exactly equivalent to the Python path (upb parse + decode.py):
 *   - the whole request is validated as upb would (field wire types, lengths, varints, UTF-8 of every proto3
 *     string, nesting depth); anything this code does not fully understand makes decode() return None ("bail"),
 *     and the caller decodes the request with upb + Python, which decides (and raises on malformed input);
 *   - a record is turned into a row here only when every check the Python path makes is known to pass and every
 *     value is a plain case (string class, finite double score, string arrays of classes, ...); any other ml.*
 *     record is handed, as its own serialized bytes, to the Python fallback callable, which decodes it with the
 *     Python path (rejections included) and appends to the same lists, so order is kept.
 *   - the limits (decode.py's phase 1: lengths and counts, attribute by attribute in wire order, before any other
 *     check) are applied here on the raw slices, before anything is copied: the first attribute beyond a limit
 *     rejects the record through the Python ``reject(code, key_prefix, key_bytes, n, limit)`` callable (which
 *     writes the same message as the Python path), unless the record has an attribute whose value upb would merge
 *     or override differently (repeated key/value fields, several oneof members): then the Python path decides;
 *   - the caches are Python's (decode.py, bounded in bytes): this code only looks them up, and inserts through
 *     Python callables on a miss.
 * tests/processor/test_fastdecode.py compares both paths on generated, fuzzed and mutated requests.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef OTEL_ML_SOURCE_HASH
#define OTEL_ML_SOURCE_HASH "unknown"
#endif

#define MAX_DEPTH 32      /* deeper nesting: bail (upb allows 100; the Python path decides) */
#define MAX_ATTRS 64      /* more attributes on one ml.* record: Python fallback for that record */
#define SHOWN_BYTES 64    /* decode.SHOWN_BYTES: bytes of a key passed to reject() for the message */

/* limits, in the order of decode._c_limits() */
enum Limit { L_ID, L_MODEL, L_TASK, L_CLASS, L_SEGMENT, L_FEATURE_NAME, L_FEATURE_VALUE, L_SEGMENTS, L_FEATURES,
             L_ITEMS, L_COUNT };
/* codes of decode.limit_message() */
enum LimitCode { LIMIT_VALUE, LIMIT_ITEMS, LIMIT_SEGMENTS, LIMIT_DIMENSION, LIMIT_ITEM };

/* ---- result codes of the wire walkers ---------------------------------------------------------------------- */
#define OK 0
#define BAIL 1    /* not understood / malformed: the Python path decides for the whole request */
#define ERR 2     /* a Python exception is set */
#define STOP 3    /* the requested range of records is decoded: stop walking (not an error) */

typedef struct {
    const uint8_t *p;
    Py_ssize_t n;
} Slice;

/* ---- configuration (set once from decode.py: the semantic conventions are the single source of names) ------- */
enum Known {
    K_MODEL, K_VERSION, K_TASK, K_ID, K_PRED_VALUE, K_PRED_VALUES, K_SCORE, K_SCORES, K_CLASSES, K_LABEL_VALUE,
    K_LABEL_VALUES, K_LABEL_RELEVANCE, K_COUNT
};
static Slice known_keys[K_COUNT];
static Slice ev_prediction, ev_label, segment_prefix, feature_prefix, namespace_prefix;
static Slice task_binary, task_multiclass, task_regression;
static PyObject *o_binary, *o_multiclass, *o_regression, *o_one, *o_empty;
static PyObject *segment_cache;   /* bytes (raw segment attributes) -> segment string (looked up here only) */
static PyObject *classes_cache;   /* tuple of classes -> the same tuple (interned; looked up here only) */
static PyObject *segment_of;      /* Python: (raw bytes, tuple of (key, value) pairs) -> segment string, cached */
static PyObject *intern_classes;  /* Python: tuple of classes -> the interned tuple, cached */
static int configured = 0;
static char sep_char = 0x1f;

/* ---- wire primitives ------------------------------------------------------------------------------------------ */
static inline int rd_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out) {
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int i = 0; i < 10 && p < end; i++) {
        uint8_t b = *p++;
        if (i == 9 && b > 1) return BAIL;  /* beyond 64 bits: upb's edge rules decide */
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *pp = p;
            *out = v;
            return OK;
        }
    }
    return BAIL;
}

typedef struct {
    uint32_t field;
    uint32_t wt;
    uint64_t u;       /* varint value, or fixed64/fixed32 bits */
    Slice s;          /* length-delimited payload */
} Field;

/* Reads one field; returns OK, BAIL (malformed or group wire types). */
static inline int rd_field(const uint8_t **pp, const uint8_t *end, Field *f) {
    uint64_t tag;
    if (rd_varint(pp, end, &tag) != OK || tag > 0xFFFFFFFFu) return BAIL;
    f->field = (uint32_t)(tag >> 3);
    f->wt = (uint32_t)(tag & 7);
    if (f->field == 0) return BAIL;
    const uint8_t *p = *pp;
    switch (f->wt) {
    case 0:
        return rd_varint(pp, end, &f->u);
    case 1:
        if (end - p < 8) return BAIL;
        memcpy(&f->u, p, 8);  /* little-endian machines only (checked at import) */
        *pp = p + 8;
        return OK;
    case 2: {
        uint64_t len;
        if (rd_varint(pp, end, &len) != OK) return BAIL;
        p = *pp;
        if (len > (uint64_t)(end - p)) return BAIL;
        f->s.p = p;
        f->s.n = (Py_ssize_t)len;
        *pp = p + len;
        return OK;
    }
    case 5: {
        if (end - p < 4) return BAIL;
        uint32_t v;
        memcpy(&v, p, 4);
        f->u = v;
        *pp = p + 4;
        return OK;
    }
    default:
        return BAIL;  /* groups (3/4) and invalid wire types */
    }
}

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF), as upb checks proto3 strings. */
static int utf8_ok(Slice s) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    while (p < end) {
        uint8_t c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            if (end - p < 2 || (p[1] & 0xC0) != 0x80) return 0;
            p += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
            if (c == 0xE0 && p[1] < 0xA0) return 0;   /* overlong */
            if (c == 0xED && p[1] >= 0xA0) return 0;  /* surrogate */
            p += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
            if (c == 0xF0 && p[1] < 0x90) return 0;   /* overlong */
            if (c == 0xF4 && p[1] >= 0x90) return 0;  /* > U+10FFFF */
            p += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

static inline int eq(Slice a, Slice b) { return a.n == b.n && memcmp(a.p, b.p, (size_t)a.n) == 0; }
static inline int starts(Slice a, Slice prefix) {
    return a.n >= prefix.n && memcmp(a.p, prefix.p, (size_t)prefix.n) == 0;
}
static inline PyObject *str_of(Slice s) { return PyUnicode_DecodeUTF8((const char *)s.p, s.n, NULL); }

/* ---- validation of the parts that are not decoded ------------------------------------------------------------ */
static int validate_anyvalue(Slice s, int depth);

static int validate_keyvalue(Slice s, int depth) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return BAIL;
        if (f.field == 1) {
            if (f.wt != 2 || !utf8_ok(f.s)) return BAIL;
        } else if (f.field == 2) {
            if (f.wt != 2) return BAIL;
            int r = validate_anyvalue(f.s, depth + 1);
            if (r != OK) return r;
        } else if (f.field == 3) {
            if (f.wt != 0) return BAIL;
        }
    }
    return OK;
}

/* ArrayValue and KeyValueList: field 1 repeated (AnyValue resp. KeyValue). */
static int validate_list(Slice s, int depth, int of_keyvalues) {
    if (depth > MAX_DEPTH) return BAIL;
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return BAIL;
        if (f.field == 1) {
            if (f.wt != 2) return BAIL;
            int r = of_keyvalues ? validate_keyvalue(f.s, depth + 1) : validate_anyvalue(f.s, depth + 1);
            if (r != OK) return r;
        }
    }
    return OK;
}

static int validate_anyvalue(Slice s, int depth) {
    if (depth > MAX_DEPTH) return BAIL;
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return BAIL;
        int r = OK;
        switch (f.field) {
        case 1: r = (f.wt == 2 && utf8_ok(f.s)) ? OK : BAIL; break;
        case 2: case 3: case 8: r = f.wt == 0 ? OK : BAIL; break;
        case 4: r = f.wt == 1 ? OK : BAIL; break;
        case 5: r = f.wt == 2 ? validate_list(f.s, depth + 1, 0) : BAIL; break;
        case 6: r = f.wt == 2 ? validate_list(f.s, depth + 1, 1) : BAIL; break;
        case 7: r = f.wt == 2 ? OK : BAIL; break;
        default: break;
        }
        if (r != OK) return r;
    }
    return OK;
}

/* Resource (attributes 1, dropped 2, entity_refs 3) and InstrumentationScope (name 1, version 2, attributes 3,
 * dropped 4). */
static int validate_entity_ref(Slice s) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return BAIL;
        if (f.field >= 1 && f.field <= 4 && (f.wt != 2 || !utf8_ok(f.s))) return BAIL;
    }
    return OK;
}

static int validate_resource(Slice s) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return BAIL;
        int r = OK;
        if (f.field == 1) r = f.wt == 2 ? validate_keyvalue(f.s, 1) : BAIL;
        else if (f.field == 2) r = f.wt == 0 ? OK : BAIL;
        else if (f.field == 3) r = f.wt == 2 ? validate_entity_ref(f.s) : BAIL;
        if (r != OK) return r;
    }
    return OK;
}

static int validate_scope(Slice s) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return BAIL;
        int r = OK;
        if (f.field == 1 || f.field == 2) r = (f.wt == 2 && utf8_ok(f.s)) ? OK : BAIL;
        else if (f.field == 3) r = f.wt == 2 ? validate_keyvalue(f.s, 1) : BAIL;
        else if (f.field == 4) r = f.wt == 0 ? OK : BAIL;
        if (r != OK) return r;
    }
    return OK;
}

/* ---- attribute values ------------------------------------------------------------------------------------------ */
enum Kind { V_NONE, V_STR, V_BOOL, V_INT, V_DBL, V_ARR, V_OTHER };

typedef struct {
    Slice key;
    int kind;        /* of the last oneof member seen */
    int members;     /* oneof members seen (more than one: the record goes to the Python path) */
    int keys, values;  /* occurrences of KeyValue.key / KeyValue.value */
    Slice str;       /* V_STR payload, V_ARR payload */
    uint64_t bits;   /* V_BOOL / V_INT varint, V_DBL bits */
} Attr;

static inline double as_double(uint64_t bits) {
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

/* Parses and validates one AnyValue (depth of the KeyValue's value: 2 below the record). */
static int parse_anyvalue(Slice s, Attr *a, int depth) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return BAIL;
        int kind = -1;
        switch (f.field) {
        case 1:
            if (f.wt != 2 || !utf8_ok(f.s)) return BAIL;
            kind = V_STR;
            a->str = f.s;
            break;
        case 2: if (f.wt != 0) return BAIL; kind = V_BOOL; a->bits = f.u; break;
        case 3: if (f.wt != 0) return BAIL; kind = V_INT; a->bits = f.u; break;
        case 4: if (f.wt != 1) return BAIL; kind = V_DBL; a->bits = f.u; break;
        case 5:
            if (f.wt != 2) return BAIL;
            if (validate_list(f.s, depth + 1, 0) != OK) return BAIL;
            kind = V_ARR;
            a->str = f.s;
            break;
        case 6:
            if (f.wt != 2 || validate_list(f.s, depth + 1, 1) != OK) return BAIL;
            kind = V_OTHER;
            break;
        case 7: if (f.wt != 2) return BAIL; kind = V_OTHER; break;
        case 8: if (f.wt != 0) return BAIL; kind = V_OTHER; break;
        default: break;  /* unknown field: skipped */
        }
        if (kind >= 0) {
            a->kind = kind;
            a->members++;
        }
    }
    return OK;
}

static int parse_keyvalue(Slice s, Attr *a) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    memset(a, 0, sizeof(*a));
    a->key.p = (const uint8_t *)"";
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return BAIL;
        if (f.field == 1) {
            if (f.wt != 2 || !utf8_ok(f.s)) return BAIL;
            a->key = f.s;
            a->keys++;
        } else if (f.field == 2) {
            if (f.wt != 2) return BAIL;
            a->values++;
            int r = parse_anyvalue(f.s, a, 3);
            if (r != OK) return r;
        } else if (f.field == 3) {
            if (f.wt != 0) return BAIL;
        }
    }
    return OK;
}

/* Elements of an ArrayValue: all strings (non-empty) or all doubles (finite), one oneof member each; returns the
 * element count, -1 when the array is of another shape (Python path), -2 on a bail. Fills out (may be NULL). */
static Py_ssize_t array_items(Slice s, int want_str, PyObject *out, Py_ssize_t cap) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    Py_ssize_t n = 0;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return -2;
        if (f.field != 1) continue;
        if (f.wt != 2) return -2;
        Attr v;
        memset(&v, 0, sizeof(v));
        if (parse_anyvalue(f.s, &v, 4) != OK) return -2;
        if (v.members != 1) return -1;
        if (want_str) {
            if (v.kind != V_STR || v.str.n == 0) return -1;
        } else {
            if (v.kind != V_DBL || !isfinite(as_double(v.bits))) return -1;
        }
        if (out != NULL) {
            if (n >= cap) return -1;
            PyObject *o = want_str ? str_of(v.str) : PyFloat_FromDouble(as_double(v.bits));
            if (o == NULL) return -3;
            if (PyList_Check(out)) PyList_SET_ITEM(out, n, o);
            else PyTuple_SET_ITEM(out, n, o);
        }
        n++;
    }
    return n;
}

/* A list of floats / tuple of strings from an array attribute; NULL with *why = 1 (Python path) or 2 (error). */
static PyObject *array_value(const Attr *a, int want_str, int *why) {
    if (a->kind != V_ARR || a->members != 1) {
        *why = 1;
        return NULL;
    }
    Py_ssize_t n = array_items(a->str, want_str, NULL, 0);
    if (n <= 0) {  /* empty, another shape, or malformed: the Python path */
        *why = 1;
        return NULL;
    }
    PyObject *out = want_str ? PyTuple_New(n) : PyList_New(n);
    if (out == NULL) {
        *why = 2;
        return NULL;
    }
    Py_ssize_t got = array_items(a->str, want_str, out, n);
    if (got != n) {
        Py_DECREF(out);
        *why = got == -3 ? 2 : 1;
        return NULL;
    }
    return out;
}

/* ---- per-call string reuse (model, version, class values repeat on every record) ---------------------------- */
typedef struct {
    Slice s;
    PyObject *o;
} Memo;

static PyObject *memo_str(Memo *m, Slice s) {
    if (m->o != NULL && eq(m->s, s)) {
        Py_INCREF(m->o);
        return m->o;
    }
    PyObject *o = str_of(s);
    if (o == NULL) return NULL;
    Py_XSETREF(m->o, o);
    m->s = s;
    Py_INCREF(o);
    return o;
}

typedef struct {
    PyObject *now;
    int extras;
    PyObject *preds, *extras_list, *labels, *fallback, *reject;
    PyObject *body;              /* memoryview of the request: fallback records are slices of it (no copy) */
    const uint8_t *base;         /* start of the request buffer */
    Py_ssize_t lim[L_COUNT];
    Memo model, version, value[4], label[4];
    Py_ssize_t received, ignored, dropped_long, dropped_many;
    int dry;                     /* validate and count only: no rows, no fallback, no rejection */
    Py_ssize_t index, start, stop;  /* record index in the request; decode records in [start, stop) only */
    uint64_t last_when;          /* time of the last row and its float: records of a batch share their time */
    PyObject *last_ts;
} Ctx;

static PyObject *memo_class(Memo *slots, Slice s) {
    for (int i = 0; i < 4; i++)
        if (slots[i].o != NULL && eq(slots[i].s, s)) {
            Py_INCREF(slots[i].o);
            return slots[i].o;
        }
    for (int i = 0; i < 4; i++)
        if (slots[i].o == NULL) return memo_str(&slots[i], s);
    return str_of(s);
}

static void ctx_clear(Ctx *c) {
    Py_CLEAR(c->last_ts);
    Py_CLEAR(c->model.o);
    Py_CLEAR(c->version.o);
    for (int i = 0; i < 4; i++) {
        Py_CLEAR(c->value[i].o);
        Py_CLEAR(c->label[i].o);
    }
}

/* ---- one record -------------------------------------------------------------------------------------------------- */
typedef struct {
    int code;                /* enum LimitCode, -1 none */
    Slice key;
    Py_ssize_t n, limit;
} Violation;

typedef struct {
    Attr attrs[MAX_ATTRS];
    int n;
    int known[K_COUNT];      /* index into attrs, -1 absent */
    int odd;                 /* something only the Python path handles */
    int weird;               /* an attribute upb would merge or override differently: the Python path decides limits */
    int segments;            /* ml.segment.* attributes so far (every one, stored or not) */
    Violation v;             /* the first attribute beyond a limit, in wire order */
} Rec;

static int fallback_record(Ctx *c, Slice record) {
    Py_ssize_t start = record.p - c->base;
    PyObject *b = PySequence_GetSlice(c->body, start, start + record.n);  /* a memoryview: no copy */
    if (b == NULL) return ERR;
    PyObject *r = PyObject_CallOneArg(c->fallback, b);
    Py_DECREF(b);
    if (r == NULL) return ERR;
    Py_DECREF(r);
    return OK;
}

static int reject_record(Ctx *c, const Violation *v) {
    Py_ssize_t shown = v->key.n < SHOWN_BYTES ? v->key.n : SHOWN_BYTES;
    PyObject *r = PyObject_CallFunction(c->reject, "iy#nnn", v->code, (const char *)v->key.p, shown, v->key.n, v->n,
                                        v->limit);
    if (r == NULL) return ERR;
    Py_DECREF(r);
    return OK;
}

static inline void violate(Rec *r, int code, Slice key, Py_ssize_t n, Py_ssize_t limit) {
    r->v.code = code;
    r->v.key = key;
    r->v.n = n;
    r->v.limit = limit;
}

/* Items of a list attribute: count (> L_ITEMS) and, for string items (last oneof member), length (> L_CLASS). The
 * array was validated when its attribute was parsed. Small payloads cannot break either limit: skipped. */
static void check_list(Ctx *c, Rec *r, const Attr *a) {
    Slice s = a->str;
    Py_ssize_t max_items = c->lim[L_ITEMS], max_len = c->lim[L_CLASS];
    if (s.n <= 2 * max_items + 1 && s.n <= max_len) return;  /* an item takes >= 2 bytes */
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    Py_ssize_t n = 0;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return;
        if (f.field == 1 && f.wt == 2) n++;
    }
    if (n > max_items) {
        violate(r, LIMIT_ITEMS, a->key, n, max_items);
        return;
    }
    if (s.n <= max_len) return;
    p = s.p;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return;
        if (f.field != 1 || f.wt != 2 || f.s.n <= max_len) continue;
        Attr item;
        memset(&item, 0, sizeof(item));
        if (parse_anyvalue(f.s, &item, 4) != OK) return;
        if (item.kind == V_STR && item.str.n > max_len) {
            violate(r, LIMIT_ITEM, a->key, item.str.n, max_len);
            return;
        }
    }
}

/* Phase 1 of decode._record for one attribute (k: its known-key index, K_COUNT if none). Features are checked when
 * their dict is built (they are dropped, not rejected). */
static void check_limits(Ctx *c, Rec *r, const Attr *a, int k) {
    if (k == K_COUNT) {
        if (!starts(a->key, segment_prefix)) return;
        Py_ssize_t max = c->lim[L_SEGMENT];
        if (++r->segments > c->lim[L_SEGMENTS]) violate(r, LIMIT_SEGMENTS, a->key, r->segments, c->lim[L_SEGMENTS]);
        else if (a->key.n - segment_prefix.n > max) violate(r, LIMIT_DIMENSION, a->key, a->key.n - segment_prefix.n, max);
        else if (a->kind == V_STR && a->str.n > max) violate(r, LIMIT_VALUE, a->key, a->str.n, max);
        return;
    }
    if (k == K_SCORES && !c->extras) return;  /* not read without a stage */
    Py_ssize_t max = k == K_ID ? c->lim[L_ID] : (k == K_MODEL || k == K_VERSION) ? c->lim[L_MODEL]
                     : k == K_TASK ? c->lim[L_TASK] : c->lim[L_CLASS];
    if (a->kind == V_STR) {
        if (a->str.n > max) violate(r, LIMIT_VALUE, a->key, a->str.n, max);
    } else if (a->kind == V_ARR && (k == K_PRED_VALUES || k == K_CLASSES || k == K_LABEL_VALUES ||
                                    k == K_LABEL_RELEVANCE || k == K_SCORES)) {
        check_list(c, r, a);
    }
}

static PyObject *join_key(Slice model, Slice id) {
    Py_ssize_t n = model.n + 1 + id.n;
    char stack[512];
    char *buf = n <= (Py_ssize_t)sizeof(stack) ? stack : PyMem_Malloc((size_t)n);
    if (buf == NULL) return PyErr_NoMemory();
    memcpy(buf, model.p, (size_t)model.n);
    buf[model.n] = sep_char;
    memcpy(buf + model.n + 1, id.p, (size_t)id.n);
    PyObject *o = PyUnicode_DecodeUTF8(buf, n, NULL);
    if (buf != stack) PyMem_Free(buf);
    return o;
}

static inline const Attr *get(const Rec *r, int k) { return r->known[k] >= 0 ? &r->attrs[r->known[k]] : NULL; }
static inline int plain_str(const Attr *a) { return a != NULL && a->members == 1 && a->kind == V_STR; }

/* The segment string of the record's ml.segment.* attributes ("" when none); NULL + *why as in array_value. */
static PyObject *segment_string(const Rec *r, int *why) {
    int count = 0;
    Py_ssize_t size = 0;
    for (int i = 0; i < r->n; i++) {
        const Attr *a = &r->attrs[i];
        if (!starts(a->key, segment_prefix)) continue;
        if (!plain_str(a)) {
            *why = 1;
            return NULL;
        }
        for (int j = 0; j < i; j++)
            if (eq(r->attrs[j].key, a->key)) {  /* repeated segment key: last wins in Python, keep it simple */
                *why = 1;
                return NULL;
            }
        count++;
        size += a->key.n + a->str.n + 48;  /* two "<length>:" prefixes */
    }
    if (count == 0) {
        Py_INCREF(o_empty);
        return o_empty;
    }
    PyObject *raw = PyBytes_FromStringAndSize(NULL, size);
    if (raw == NULL) goto error;
    char *w = PyBytes_AS_STRING(raw);
    for (int i = 0; i < r->n; i++) {
        const Attr *a = &r->attrs[i];
        if (!starts(a->key, segment_prefix)) continue;
        int len = snprintf(w, 16, "%zd:", a->key.n);
        w += len;
        memcpy(w, a->key.p, (size_t)a->key.n);
        w += a->key.n;
        len = snprintf(w, 16, "%zd:", a->str.n);
        w += len;
        memcpy(w, a->str.p, (size_t)a->str.n);
        w += a->str.n;
    }
    if (_PyBytes_Resize(&raw, w - PyBytes_AS_STRING(raw)) < 0) goto error;
    PyObject *hit = PyDict_GetItemWithError(segment_cache, raw);
    if (hit != NULL) {
        Py_DECREF(raw);
        Py_INCREF(hit);
        return hit;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(raw);
        goto error;
    }
    PyObject *pairs = PyTuple_New(count);
    if (pairs == NULL) {
        Py_DECREF(raw);
        goto error;
    }
    for (int i = 0, k = 0; i < r->n; i++) {
        const Attr *a = &r->attrs[i];
        if (!starts(a->key, segment_prefix)) continue;
        PyObject *pair = Py_BuildValue("(NN)", str_of(a->key), str_of(a->str));
        if (pair == NULL) {
            Py_DECREF(pairs);
            Py_DECREF(raw);
            goto error;
        }
        PyTuple_SET_ITEM(pairs, k++, pair);
    }
    PyObject *seg = PyObject_CallFunctionObjArgs(segment_of, raw, pairs, NULL);
    Py_DECREF(pairs);
    Py_DECREF(raw);
    if (seg == NULL) goto error;
    return seg;
error:
    *why = 2;
    return NULL;
}

/* Features dict of the record (only with extras); features beyond the limits are left out and counted in
 * *dropped_long / *dropped_many (in wire order, as decode._record does). */
static PyObject *features_dict(const Ctx *c, const Rec *r, Py_ssize_t *dropped_long, Py_ssize_t *dropped_many) {
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    Py_ssize_t count = 0;
    for (int i = 0; i < r->n; i++) {
        const Attr *a = &r->attrs[i];
        if (!starts(a->key, feature_prefix)) continue;
        Slice name = {a->key.p + feature_prefix.n, a->key.n - feature_prefix.n};
        if (name.n > c->lim[L_FEATURE_NAME] || (a->kind == V_STR && a->str.n > c->lim[L_FEATURE_VALUE])) {
            (*dropped_long)++;
            continue;
        }
        if (count >= c->lim[L_FEATURES]) {  /* counted among the features kept */
            (*dropped_many)++;
            continue;
        }
        count++;
        PyObject *v;
        switch (a->kind) {
        case V_STR: v = str_of(a->str); break;
        case V_DBL: v = PyFloat_FromDouble(as_double(a->bits)); break;
        case V_INT: v = PyLong_FromLongLong((long long)a->bits); break;
        case V_BOOL: v = PyBool_FromLong(a->bits != 0); break;
        default: v = Py_NewRef(Py_None); break;  /* arrays, kvlists, bytes, unset: None */
        }
        PyObject *k = str_of(name);
        if (v == NULL || k == NULL || PyDict_SetItem(d, k, v) < 0) {
            Py_XDECREF(v);
            Py_XDECREF(k);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
        Py_DECREF(k);
    }
    return d;
}

#define ROW_LEN 17

/* The label half (l_str, l_num, l_list, l_rel, l_ts) of a string class or a finite double; 0 when the label is of
 * another kind (the Python path decides). */
static inline int plain_label(const Attr *a) {
    return a != NULL && a->members == 1 &&
           (a->kind == V_STR || (a->kind == V_DBL && isfinite(as_double(a->bits))));
}

static void label_half(Ctx *c, const Attr *label, PyObject *ts, PyObject **items) {
    if (label->kind == V_STR) {
        items[0] = memo_class(c->label, label->str);
        items[1] = Py_NewRef(Py_None);
    } else {
        items[0] = Py_NewRef(Py_None);
        items[1] = PyFloat_FromDouble(as_double(label->bits));
    }
    items[2] = Py_NewRef(Py_None);
    items[3] = Py_NewRef(Py_None);
    items[4] = Py_NewRef(ts);
}

/* Builds the row of a prediction; returns OK (appended), BAIL (use the Python path for this record), ERR. */
static int prediction_row(Ctx *c, const Rec *r, PyObject *ts) {
    const Attr *model = get(r, K_MODEL), *id = get(r, K_ID), *task = get(r, K_TASK);
    if (!plain_str(model) || !plain_str(id) || model->str.n == 0 || id->str.n == 0 || !plain_str(task)) return BAIL;
    PyObject *task_o;
    int regression = 0, binary = 0;
    if (eq(task->str, task_binary)) { task_o = o_binary; binary = 1; }
    else if (eq(task->str, task_multiclass)) task_o = o_multiclass;
    else if (eq(task->str, task_regression)) { task_o = o_regression; regression = 1; }
    else return BAIL;
    const Attr *version = get(r, K_VERSION), *value = get(r, K_PRED_VALUE), *score = get(r, K_SCORE);
    if (version != NULL && !plain_str(version)) return BAIL;
    if (value == NULL || value->members != 1) return BAIL;
    if (regression ? (value->kind != V_DBL || !isfinite(as_double(value->bits))) : value->kind != V_STR) return BAIL;
    if (score != NULL && (score->members != 1 || score->kind != V_DBL || !isfinite(as_double(score->bits))))
        return BAIL;
    const Attr *label = get(r, K_LABEL_VALUE);
    if (label == NULL && get(r, K_LABEL_VALUES) != NULL) return BAIL;
    if (label != NULL && !plain_label(label)) return BAIL;
    const Attr *classes = get(r, K_CLASSES), *scores = c->extras ? get(r, K_SCORES) : NULL;
    if (!(c->extras || binary)) classes = NULL;

    int why = 0;
    PyObject *row = NULL, *classes_o = NULL, *scores_o = NULL, *segment = NULL, *extra = NULL;
    if (classes != NULL) {
        PyObject *t = array_value(classes, 1, &why);
        if (t == NULL) goto out;
        PyObject *hit = PyDict_GetItemWithError(classes_cache, t);
        if (hit != NULL) {
            classes_o = Py_NewRef(hit);
        } else if (!PyErr_Occurred()) {
            classes_o = PyObject_CallOneArg(intern_classes, t);
        }
        Py_DECREF(t);
        if (classes_o == NULL) { why = 2; goto out; }
    }
    if (scores != NULL) {
        scores_o = array_value(scores, 0, &why);
        if (scores_o == NULL) goto out;
        if (classes_o != NULL && PyTuple_GET_SIZE(classes_o) != PyList_GET_SIZE(scores_o)) { why = 1; goto out; }
    }
    segment = segment_string(r, &why);
    if (segment == NULL) goto out;
    Py_ssize_t dropped_long = 0, dropped_many = 0;
    if (c->extras) {
        PyObject *features = features_dict(c, r, &dropped_long, &dropped_many);
        if (features == NULL) { why = 2; goto out; }
        extra = PyTuple_Pack(3, features, scores_o ? scores_o : Py_None, classes_o ? classes_o : Py_None);
        Py_DECREF(features);
        if (extra == NULL) { why = 2; goto out; }
    }
    row = PyTuple_New(ROW_LEN);
    if (row == NULL) { why = 2; goto out; }
    PyObject *items[ROW_LEN];
    items[0] = join_key(model->str, id->str);
    items[1] = Py_NewRef(c->now);
    items[2] = memo_str(&c->model, model->str);
    items[3] = version != NULL ? memo_str(&c->version, version->str) : Py_NewRef(o_empty);
    items[4] = Py_NewRef(task_o);
    items[5] = Py_NewRef(segment);
    items[6] = regression ? Py_NewRef(Py_None) : memo_class(c->value, value->str);
    items[7] = regression ? PyFloat_FromDouble(as_double(value->bits)) : Py_NewRef(Py_None);
    items[8] = score != NULL ? PyFloat_FromDouble(as_double(score->bits)) : Py_NewRef(Py_None);
    if (binary)
        items[9] = Py_NewRef(classes_o != NULL ? PyTuple_GET_ITEM(classes_o, PyTuple_GET_SIZE(classes_o) - 1) : o_one);
    else
        items[9] = Py_NewRef(Py_None);
    items[10] = Py_NewRef(Py_None);
    items[11] = Py_NewRef(ts);
    if (label != NULL) {
        label_half(c, label, ts, items + 12);
    } else {
        for (int i = 12; i < ROW_LEN; i++) items[i] = Py_NewRef(Py_None);
    }
    int failed = 0;
    for (int i = 0; i < ROW_LEN; i++) {
        if (items[i] == NULL) failed = 1;
        PyTuple_SET_ITEM(row, i, items[i] != NULL ? items[i] : Py_NewRef(Py_None));
    }
    if (failed || PyList_Append(c->preds, row) < 0 || PyList_Append(c->extras_list, extra ? extra : Py_None) < 0) {
        why = 2;
        goto out;
    }
    c->dropped_long += dropped_long;
    c->dropped_many += dropped_many;
    why = 0;
out:
    Py_XDECREF(row);
    Py_XDECREF(classes_o);
    Py_XDECREF(scores_o);
    Py_XDECREF(segment);
    Py_XDECREF(extra);
    return why == 0 ? OK : why == 1 ? BAIL : ERR;
}

static int label_row(Ctx *c, const Rec *r, PyObject *ts) {
    const Attr *model = get(r, K_MODEL), *id = get(r, K_ID), *label = get(r, K_LABEL_VALUE);
    if (!plain_str(model) || !plain_str(id) || model->str.n == 0 || id->str.n == 0 || !plain_label(label)) return BAIL;
    PyObject *items[ROW_LEN];
    items[0] = join_key(model->str, id->str);
    items[1] = Py_NewRef(c->now);
    items[2] = memo_str(&c->model, model->str);
    for (int i = 3; i < 12; i++) items[i] = Py_NewRef(Py_None);
    label_half(c, label, ts, items + 12);
    PyObject *row = PyTuple_New(ROW_LEN);
    int failed = row == NULL;
    for (int i = 0; i < ROW_LEN; i++) {
        if (items[i] == NULL) failed = 1;
        if (row != NULL) PyTuple_SET_ITEM(row, i, items[i] != NULL ? items[i] : Py_NewRef(Py_None));
        else Py_XDECREF(items[i]);
    }
    int rc = (failed || PyList_Append(c->labels, row) < 0) ? ERR : OK;
    Py_XDECREF(row);
    return rc;
}

static int record(Ctx *c, Slice s, Rec *r) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    Slice name = {(const uint8_t *)"", 0};
    uint64_t t = 0, observed = 0;
    int names = 0, times = 0, observeds = 0;
    r->n = 0;
    r->odd = 0;
    r->weird = 0;
    r->segments = 0;
    r->v.code = -1;
    for (int k = 0; k < K_COUNT; k++) r->known[k] = -1;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return BAIL;
        switch (f.field) {
        case 1: if (f.wt != 1) return BAIL; t = f.u; times++; break;
        case 11: if (f.wt != 1) return BAIL; observed = f.u; observeds++; break;
        case 2: case 7: if (f.wt != 0) return BAIL; break;
        case 8: if (f.wt != 5) return BAIL; break;
        case 3: if (f.wt != 2 || !utf8_ok(f.s)) return BAIL; break;
        case 9: case 10: if (f.wt != 2) return BAIL; break;
        case 5: if (f.wt != 2 || validate_anyvalue(f.s, 2) != OK) return BAIL; break;
        case 12: if (f.wt != 2 || !utf8_ok(f.s)) return BAIL; name = f.s; names++; break;
        case 6: {
            if (f.wt != 2) return BAIL;
            Attr tmp, *a = r->n < MAX_ATTRS ? &r->attrs[r->n] : &tmp;
            int rc = parse_keyvalue(f.s, a);
            if (rc != OK) return rc;
            int stored = r->n < MAX_ATTRS;
            if (!stored) r->odd = 1;
            int k = 0;
            for (; k < K_COUNT; k++)
                if (eq(a->key, known_keys[k])) {
                    if (stored) {
                        if (r->known[k] >= 0) r->odd = 1;  /* repeated key */
                        r->known[k] = r->n;
                    }
                    break;
                }
            if (a->keys != 1 || a->values > 1 || (a->members > 1 && (c->extras || !starts(a->key, feature_prefix)))) {
                r->odd = 1;
                r->weird = 1;  /* upb merges or overrides: only the Python path knows the value it sees */
            }
            /* an otel-ml key this code does not know (a newer attribute): the Python path decides */
            if (k == K_COUNT && starts(a->key, namespace_prefix) && !starts(a->key, segment_prefix) &&
                !starts(a->key, feature_prefix))
                r->odd = 1;
            if (r->v.code < 0) check_limits(c, r, a, k);
            if (stored) r->n++;
            break;
        }
        default: break;
        }
    }
    c->received++;
    int is_pred = eq(name, ev_prediction);
    if (!is_pred && !eq(name, ev_label)) {
        c->ignored++;
        return OK;
    }
    if (c->dry) return OK;
    if (r->v.code >= 0 && !r->weird) return reject_record(c, &r->v);  /* nothing of the record copied */
    uint64_t when = t ? t : observed;
    if (r->odd || names > 1 || times > 1 || observeds > 1 || when >= ((uint64_t)1 << 63)) return fallback_record(c, s);
    PyObject *ts;
    if (!when) {
        ts = Py_NewRef(c->now);
    } else if (c->last_ts != NULL && when == c->last_when) {
        ts = Py_NewRef(c->last_ts);
    } else {
        ts = PyFloat_FromDouble((double)(int64_t)when / 1e9);
        if (ts == NULL) return ERR;
        Py_XSETREF(c->last_ts, Py_NewRef(ts));
        c->last_when = when;
    }
    int rc = is_pred ? prediction_row(c, r, ts) : label_row(c, r, ts);
    Py_DECREF(ts);
    if (rc == BAIL) return fallback_record(c, s);
    return rc;
}

/* ---- the request ----------------------------------------------------------------------------------------------- */
static int scope_logs(Ctx *c, Slice s, Rec *r) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return BAIL;
        int rc = OK;
        if (f.field == 1) rc = f.wt == 2 ? validate_scope(f.s) : BAIL;
        else if (f.field == 2) {
            if (f.wt != 2) return BAIL;
            Py_ssize_t i = c->index++;
            if (i >= c->stop) return STOP;
            rc = i < c->start ? OK : record(c, f.s, r);  /* before the range: validated by an earlier call */
        }
        else if (f.field == 3) rc = (f.wt == 2 && utf8_ok(f.s)) ? OK : BAIL;
        if (rc != OK) return rc;
    }
    return OK;
}

static int resource_logs(Ctx *c, Slice s, Rec *r) {
    const uint8_t *p = s.p, *end = s.p + s.n;
    Field f;
    while (p < end) {
        if (rd_field(&p, end, &f) != OK) return BAIL;
        int rc = OK;
        if (f.field == 1) rc = f.wt == 2 ? validate_resource(f.s) : BAIL;
        else if (f.field == 2) rc = f.wt == 2 ? scope_logs(c, f.s, r) : BAIL;
        else if (f.field == 3) rc = (f.wt == 2 && utf8_ok(f.s)) ? OK : BAIL;
        if (rc != OK) return rc;
    }
    return OK;
}

PyDoc_STRVAR(decode_doc,
"decode(body, now, extras, predictions, extras_list, labels, fallback, reject, limits, start=0, count=-1,\n"
"       dry=False) -> (received, ignored, features_dropped_too_long, features_dropped_too_many, more) | None\n\n"
"Appends the rows of the records of the serialized ExportLogsServiceRequest ``body`` to the given lists;\n"
"``fallback(record)`` decodes, in Python, each ml.* record this code does not handle (``record`` is a memoryview\n"
"of ``body``, valid during the call); ``reject(code, key_prefix, key_bytes, n, limit)`` counts a record beyond\n"
"one of ``limits`` (a tuple, see decode._c_limits). Returns None when the request must be decoded by the Python\n"
"path as a whole (the lists then hold partial results: discard them).\n\n"
"Parts: only the records with index in [start, start + count) are decoded (``count`` < 0: to the end), the\n"
"earlier ones are skipped unread (a previous call validated them) and ``more`` tells whether records follow.\n"
"``dry``: validate the whole request and count its records, build nothing (the verdict is the one a full decode\n"
"would reach).");

static PyObject *decode(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"body", "now", "extras", "predictions", "extras_list", "labels", "fallback", "reject",
                             "limits", "start", "count", "dry", NULL};
    PyObject *body_obj, *now, *preds, *extras_list, *labels, *fallback, *reject, *limits;
    int extras, dry = 0;
    Py_ssize_t start = 0, count = -1;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "_fastdecode.configure() was not called");
        return NULL;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOpO!O!O!OOO!|nnp:decode", kwlist, &body_obj, &now, &extras,
                                     &PyList_Type, &preds, &PyList_Type, &extras_list, &PyList_Type, &labels,
                                     &fallback, &reject, &PyTuple_Type, &limits, &start, &count, &dry))
        return NULL;
    if (PyTuple_GET_SIZE(limits) != L_COUNT) {
        PyErr_Format(PyExc_ValueError, "decode: limits must have %d items", L_COUNT);
        return NULL;
    }
    Ctx c;
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < L_COUNT; i++) {
        c.lim[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(limits, i));
        if (c.lim[i] < 0) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "decode: limits must be >= 0");
            return NULL;
        }
    }
    Py_buffer body;
    if (PyObject_GetBuffer(body_obj, &body, PyBUF_SIMPLE) < 0) return NULL;
    c.body = PyMemoryView_FromObject(body_obj);
    if (c.body == NULL) {
        PyBuffer_Release(&body);
        return NULL;
    }
    c.base = body.buf;
    c.now = now;
    c.extras = extras;
    c.preds = preds;
    c.extras_list = extras_list;
    c.labels = labels;
    c.fallback = fallback;
    c.reject = reject;
    c.dry = dry;
    c.start = start < 0 ? 0 : start;
    c.stop = count < 0 ? PY_SSIZE_T_MAX : c.start + count;
    Rec *r = PyMem_Malloc(sizeof(Rec));
    if (r == NULL) {
        Py_DECREF(c.body);
        PyBuffer_Release(&body);
        return PyErr_NoMemory();
    }
    const uint8_t *p = body.buf, *end = (const uint8_t *)body.buf + body.len;
    Field f;
    int rc = OK;
    while (p < end && rc == OK) {
        if (rd_field(&p, end, &f) != OK) rc = BAIL;
        else if (f.field == 1) rc = f.wt == 2 ? resource_logs(&c, f.s, r) : BAIL;
    }
    PyMem_Free(r);
    ctx_clear(&c);
    Py_DECREF(c.body);
    PyBuffer_Release(&body);
    if (rc == ERR) return NULL;
    if (rc == BAIL) Py_RETURN_NONE;
    return Py_BuildValue("(nnnnO)", c.received, c.ignored, c.dropped_long, c.dropped_many,
                         rc == STOP ? Py_True : Py_False);
}

/* ---- configuration ------------------------------------------------------------------------------------------- */
static PyObject *kept;  /* the bytes objects the configured slices point into */

static int slice_of(PyObject *conf, const char *name, Slice *out) {
    PyObject *v = PyDict_GetItemString(conf, name);
    if (v == NULL || !PyUnicode_Check(v)) {
        PyErr_Format(PyExc_ValueError, "configure: %s must be a str", name);
        return -1;
    }
    PyObject *b = PyUnicode_AsUTF8String(v);
    if (b == NULL || PyList_Append(kept, b) < 0) {
        Py_XDECREF(b);
        return -1;
    }
    out->p = (const uint8_t *)PyBytes_AS_STRING(b);
    out->n = PyBytes_GET_SIZE(b);
    Py_DECREF(b);
    return 0;
}

static PyObject *obj_of(PyObject *conf, const char *name) {
    PyObject *v = PyDict_GetItemString(conf, name);
    if (v == NULL) PyErr_Format(PyExc_ValueError, "configure: %s is missing", name);
    return Py_XNewRef(v);
}

PyDoc_STRVAR(configure_doc,
"configure(conf: dict) -> None\n\nNames (event names, attribute keys, prefixes, task values), the separator and the\n"
"caches and segment helper shared with decode.py. Called once at import by decode.py.");

static PyObject *configure(PyObject *self, PyObject *conf) {
    static const char *key_names[K_COUNT] = {
        "model", "version", "task", "id", "pred_value", "pred_values", "score", "scores", "classes", "label_value",
        "label_values", "label_relevance"};
    if (!PyDict_Check(conf)) {
        PyErr_SetString(PyExc_TypeError, "configure: a dict is required");
        return NULL;
    }
    Py_XSETREF(kept, PyList_New(0));
    if (kept == NULL) return NULL;
    for (int k = 0; k < K_COUNT; k++)
        if (slice_of(conf, key_names[k], &known_keys[k]) < 0) return NULL;
    if (slice_of(conf, "prediction_event", &ev_prediction) < 0 || slice_of(conf, "label_event", &ev_label) < 0 ||
        slice_of(conf, "segment_prefix", &segment_prefix) < 0 || slice_of(conf, "feature_prefix", &feature_prefix) < 0 ||
        slice_of(conf, "namespace", &namespace_prefix) < 0 ||
        slice_of(conf, "binary", &task_binary) < 0 || slice_of(conf, "multiclass", &task_multiclass) < 0 ||
        slice_of(conf, "regression", &task_regression) < 0)
        return NULL;
    Slice sep;
    if (slice_of(conf, "sep", &sep) < 0) return NULL;
    if (sep.n != 1) {
        PyErr_SetString(PyExc_ValueError, "configure: sep must be one ASCII character");
        return NULL;
    }
    sep_char = (char)sep.p[0];
    Py_XSETREF(o_binary, obj_of(conf, "binary"));
    Py_XSETREF(o_multiclass, obj_of(conf, "multiclass"));
    Py_XSETREF(o_regression, obj_of(conf, "regression"));
    Py_XSETREF(o_one, obj_of(conf, "binary_default_positive"));
    Py_XSETREF(o_empty, PyUnicode_FromString(""));
    Py_XSETREF(segment_cache, obj_of(conf, "segment_cache"));
    Py_XSETREF(classes_cache, obj_of(conf, "classes_cache"));
    Py_XSETREF(segment_of, obj_of(conf, "segment_of"));
    Py_XSETREF(intern_classes, obj_of(conf, "intern_classes"));
    if (!o_binary || !o_multiclass || !o_regression || !o_one || !o_empty || !segment_cache || !classes_cache ||
        !segment_of || !intern_classes)
        return NULL;
    if (!PyDict_Check(segment_cache) || !PyDict_Check(classes_cache) || !PyCallable_Check(segment_of) ||
        !PyCallable_Check(intern_classes)) {
        PyErr_SetString(PyExc_TypeError, "configure: caches must be dicts, segment_of and intern_classes callables");
        return NULL;
    }
    configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode", (PyCFunction)(void (*)(void))decode, METH_VARARGS | METH_KEYWORDS, decode_doc},
    {"configure", configure, METH_O, configure_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastdecode",
    "OTLP logs request bytes -> otel-ml rows (C fast path of otel_ml.processor.decode).", -1, methods,
};

PyMODINIT_FUNC PyInit__fastdecode(void) {
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "_fastdecode supports little-endian machines only");
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddStringConstant(m, "SOURCE_HASH", OTEL_ML_SOURCE_HASH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
