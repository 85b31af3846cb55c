# C declarations for jsonscan.py (Cython's pure-Python mode: the .py is the code, this file
# only gives it C types, and its small C helpers). Read jsonscan.py; change the two together.
cimport cython


cdef extern from *:
    """
    /* 10 ** k for 0 <= k <= 22: exact doubles. */
    static const double dd_powers[23] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
        1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    };
    static inline double dd_pow10(int k) { return dd_powers[k]; }
    /* 10 ** k for 0 <= k <= 18. */
    static const long long dd_tens[19] = {
        1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL, 10000000LL, 100000000LL,
        1000000000LL, 10000000000LL, 100000000000LL, 1000000000000LL, 10000000000000LL,
        100000000000000LL, 1000000000000000LL, 10000000000000000LL, 100000000000000000LL,
        1000000000000000000LL,
    };
    static inline long long dd_ten_to(int k) { return dd_tens[k]; }
    /* The first n bytes at p (at most 8) as one little-endian word, zeros after them. */
    static inline unsigned long long dd_word(const unsigned char *p, Py_ssize_t n) {
        unsigned long long word = 0;
        Py_ssize_t i;
        if (n >= 8) {
            memcpy(&word, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            word = __builtin_bswap64(word);
    #endif
            return word;
        }
        for (i = n - 1; i >= 0; i--)
            word = (word << 8) | p[i];
        return word;
    }
    /* jsonscan._eight_digits: how many of the (up to) eight bytes at buf[pos:end] are
       digits, from the first, and in *run the number they write. The eight bytes are read
       as one little-endian word; less 0x30, a digit's byte is below 10, and adding 0x76 to
       its low 7 bits sets its high bit exactly when it is not (no carry crosses bytes).
       The digits are then moved to the low end of eight and summed in pairs, fours and
       eights by three multiplications (fast_float's parse_eight_digits_unrolled). */
    static inline int dd_eight_digits(const unsigned char *buf, Py_ssize_t pos,
                                      Py_ssize_t end, long long *run) {
        uint64_t x, other;
        int n;
        x = dd_word(buf + pos, end - pos) ^ 0x3030303030303030ULL;
        other = (((x & 0x7F7F7F7F7F7F7F7FULL) + 0x7676767676767676ULL) | x)
            & 0x8080808080808080ULL;
        n = other ? __builtin_ctzll(other) >> 3 : 8;
        if (n == 0)
            return 0;
        x <<= 64 - 8 * n;
        x = x * 10 + (x >> 8);
        *run = (long long)((((x & 0x000000FF000000FFULL) * 0x000F424000000064ULL)
                            + (((x >> 16) & 0x000000FF000000FFULL) * 0x0000271000000001ULL))
                           >> 32);
        return n;
    }
    /* Whether the n bytes at a and b are the same: keys are short, and a call of memcmp
       costs more than comparing them in two overlapping words. */
    static inline int dd_equal(const unsigned char *a, const unsigned char *b, Py_ssize_t n) {
        uint64_t w, x, y, z;
        uint32_t s, t, u, v;
        if (n >= 8 && n <= 16) {
            memcpy(&w, a, 8); memcpy(&x, b, 8); memcpy(&y, a + n - 8, 8); memcpy(&z, b + n - 8, 8);
            return ((w ^ x) | (y ^ z)) == 0;
        }
        if (n >= 4 && n < 8) {
            memcpy(&s, a, 4); memcpy(&t, b, 4); memcpy(&u, a + n - 4, 4); memcpy(&v, b + n - 4, 4);
            return ((s ^ t) | (u ^ v)) == 0;
        }
        return memcmp(a, b, n) == 0;
    }
    /* Whether buf[start:stop] is the bytes object key. */
    static inline int dd_same(const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop,
                              PyObject *key) {
        Py_ssize_t n = stop - start;
        return PyBytes_GET_SIZE(key) == n
            && dd_equal(buf + start, (const unsigned char *)PyBytes_AS_STRING(key), n);
    }
    /* Whether buf[start:stop] (UTF-8) is the str text. */
    static inline int dd_same_text(const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop,
                                   PyObject *text) {
        Py_ssize_t n = stop - start, size;
        const char *data;
        if (PyUnicode_IS_COMPACT_ASCII(text))
            return PyUnicode_GET_LENGTH(text) == n
                && dd_equal(buf + start, (const unsigned char *)PyUnicode_DATA(text), n);
        data = PyUnicode_AsUTF8AndSize(text, &size);  /* kept by the str */
        if (data == NULL) { PyErr_Clear(); return 0; }
        return size == n && dd_equal(buf + start, (const unsigned char *)data, n);
    }
    /* The index of the str in the list items that buf[start:stop] (UTF-8) is, -1 if none:
       found by its first eight bytes and its length (prints, sizes: jsonscan.Texts), and
       only a longer one compared with the str itself. */
    static inline Py_ssize_t dd_find_print(const unsigned char *buf, Py_ssize_t start,
                                           Py_ssize_t stop, const unsigned long long *prints,
                                           const long long *sizes, PyObject *items) {
        Py_ssize_t i, n = stop - start, count = PyList_GET_SIZE(items);
        unsigned long long word = dd_word(buf + start, n);
        for (i = 0; i < count; i++)
            if (sizes[i] == n && prints[i] == word
                && (n <= 8 || dd_same_text(buf, start, stop, PyList_GET_ITEM(items, i))))
                return i;
        return -1;
    }
    /* buf[start:stop], checked UTF-8 (ascii: only ASCII), as a str. */
    static inline PyObject *dd_text(const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop,
                                    int ascii) {
        if (ascii)
            return PyUnicode_DecodeASCII((const char *)buf + start, stop - start, NULL);
        return PyUnicode_DecodeUTF8((const char *)buf + start, stop - start, NULL);
    }
    /* The number written at buf[start:stop] (JSON's grammar, checked), correctly rounded;
       NaN if CPython's reader stops elsewhere or fails. */
    static inline double dd_strtod(const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop) {
        char *after = NULL;
        double x = PyOS_string_to_double((const char *)buf + start, &after, NULL);
        if (x == -1.0 && PyErr_Occurred()) { PyErr_Clear(); return Py_NAN; }
        if (after != (const char *)buf + stop) return Py_NAN;
        return x;
    }
    """
    bint dd_same(const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop, object key) noexcept
    bint dd_same_text(
        const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop, object text
    ) noexcept
    Py_ssize_t dd_find_print(
        const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop,
        const unsigned long long *prints, const long long *sizes, list items,
    ) noexcept
    object dd_text(const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop, bint ascii)
    double dd_strtod(const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop) noexcept
    double dd_pow10(int k) noexcept
    long long dd_ten_to(int k) noexcept
    int dd_eight_digits(
        const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end, long long *run
    ) noexcept


cdef int _OTHER, _STRING, _NUMBER, _TRUE, _FALSE, _NULL, _KEY
cdef object _GIVE_UP
cdef int _MAX_DEPTH, _MAX_DIGITS
cdef Py_ssize_t _WORDS
cdef long long _EXACT, _MAX_EXPONENT
cdef double _SMALLEST, _LARGEST

cdef double _pow10(int k) noexcept

cdef inline long long _ten_to(int k) noexcept


@cython.final
cdef class Texts:
    cdef readonly list items
    cdef unsigned long long[::1] prints
    cdef long long[::1] sizes
    cdef readonly Py_ssize_t room

    @cython.locals(n=Py_ssize_t, raw=bytes)
    cpdef add(self, str text)


@cython.final
cdef class Cursor:
    cdef bytes raw
    cdef const unsigned char *buf
    cdef public Py_ssize_t pos
    cdef Py_ssize_t end
    cdef public Py_ssize_t mark
    cdef public Py_ssize_t stop
    cdef public double x
    cdef public long long i
    cdef public bint integer
    cdef public bint ascii
    cdef public bint escaped
    cdef long long mantissa
    cdef long long exponent
    cdef bint cut
    cdef public object decoded
    cdef public int after
    cdef Texts words

    cpdef bint start(self, object raw, Py_ssize_t max_bytes) except -1

    cdef bint load(self, object raw) except -1

    @cython.locals(pos=Py_ssize_t, end=Py_ssize_t, c=int)
    cdef int ws(self) noexcept

    cdef int step(self) noexcept

    @cython.locals(c=int)
    cdef int token(self) except -1

    @cython.locals(pos=Py_ssize_t, end=Py_ssize_t, c=int)
    cdef bint string(self) except -1

    cdef int member(self, bytes head) except -1

    @cython.locals(kind=int)
    cdef inline int value_then(self) except -1

    @cython.locals(pos=Py_ssize_t, stop=Py_ssize_t)
    cdef inline bint expect(self, bytes head) noexcept

    @cython.locals(c=int, n=int, low=int, high=int, k=int)
    cdef bint _utf8(self, Py_ssize_t pos, Py_ssize_t stop) noexcept

    cdef bint _unescape(self) except -1

    @cython.locals(
        pos=Py_ssize_t, end=Py_ssize_t, first=Py_ssize_t, negative=bint,
        mantissa=cython.longlong, exponent=cython.longlong, c=int, integer=bint,
        sign=int, power=cython.longlong, x=double,
    )
    cdef bint number(self) noexcept

    @cython.locals(
        mantissa=cython.longlong, exponent=cython.longlong, run=cython.longlong, n=int,
        digit=int,
    )
    cdef inline Py_ssize_t _digits(self, Py_ssize_t pos, bint fraction) noexcept

    @cython.locals(n=Py_ssize_t)
    cdef bint _word(self, bytes word) noexcept

    cdef bint same(self, Py_ssize_t start, Py_ssize_t stop, bytes key) noexcept

    cdef bint is_key(self, bytes key) noexcept

    cdef str text(self)

    @cython.locals(found=Py_ssize_t, items=list)
    cdef str cached(self, Texts texts)

    cdef str word(self)

    cdef object value(self, int kind)

    cdef object scalar(self)

    @cython.locals(kind=int, out=dict, c=int)
    cdef object flat(self)

    @cython.locals(kind=int, c=int, close=int, d=int)
    cdef bint skip(self, int depth) except -1

    cdef bint finished(self) noexcept


@cython.locals(cursor=Cursor, c=int)
cpdef object read(bytes raw)
