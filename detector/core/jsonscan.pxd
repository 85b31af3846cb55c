# C declarations for jsonscan.py (Cython's pure-Python mode: the .py is the code, this file
# only gives it C types, and four small C helpers). Read jsonscan.py; change the two together.
cimport cython


cdef extern from *:
    """
    /* 10 ** k for 0 <= k <= 22: exact doubles. */
    static const double dd_powers[23] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
        1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    };
    static inline double dd_pow10(int k) { return dd_powers[k]; }
    /* Whether buf[start:stop] is the bytes object key. */
    static inline int dd_same(const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop,
                              PyObject *key) {
        Py_ssize_t n = stop - start;
        return PyBytes_GET_SIZE(key) == n && memcmp(buf + start, PyBytes_AS_STRING(key), n) == 0;
    }
    /* Whether buf[start:stop] (UTF-8) is the str text. */
    static inline int dd_same_text(const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop,
                                   PyObject *text) {
        Py_ssize_t n = stop - start, size;
        const char *data;
        if (PyUnicode_IS_COMPACT_ASCII(text))
            return PyUnicode_GET_LENGTH(text) == n
                && memcmp(buf + start, PyUnicode_DATA(text), n) == 0;
        data = PyUnicode_AsUTF8AndSize(text, &size);  /* kept by the str */
        if (data == NULL) { PyErr_Clear(); return 0; }
        return size == n && memcmp(buf + start, data, n) == 0;
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
    object dd_text(const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop, bint ascii)
    double dd_strtod(const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop) noexcept
    double dd_pow10(int k) noexcept


cdef int _OTHER, _STRING, _NUMBER, _TRUE, _FALSE, _NULL
cdef object _GIVE_UP
cdef int _MAX_DEPTH, _MAX_DIGITS
cdef Py_ssize_t _WORDS
cdef long long _EXACT, _MAX_EXPONENT
cdef double _SMALLEST, _LARGEST

cdef double _pow10(int k) noexcept


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
    cdef public object decoded
    cdef list words

    cpdef bint start(self, object raw, Py_ssize_t max_bytes) except -1

    cdef bint load(self, object raw) except -1

    @cython.locals(pos=Py_ssize_t, end=Py_ssize_t, c=int)
    cdef int ws(self) noexcept

    cdef int step(self) noexcept

    @cython.locals(c=int)
    cdef int token(self) except -1

    @cython.locals(pos=Py_ssize_t, end=Py_ssize_t, c=int)
    cdef bint string(self) except -1

    @cython.locals(pos=Py_ssize_t, stop=Py_ssize_t)
    cdef bint match(self, bytes key) noexcept

    @cython.locals(c=int, n=int, low=int, high=int, k=int)
    cdef bint _utf8(self, Py_ssize_t pos, Py_ssize_t stop) noexcept

    cdef bint _unescape(self) except -1

    @cython.locals(
        pos=Py_ssize_t, end=Py_ssize_t, first=Py_ssize_t, negative=bint,
        mantissa=cython.longlong, digits=int, exponent=cython.longlong, c=int, integer=bint,
        sign=int, power=cython.longlong, x=double,
    )
    cdef bint number(self) noexcept

    @cython.locals(n=Py_ssize_t)
    cdef bint _word(self, bytes word) noexcept

    cdef bint same(self, Py_ssize_t start, Py_ssize_t stop, bytes key) noexcept

    cdef bint is_key(self, bytes key) noexcept

    cdef str text(self)

    cdef str cached(self, list texts, Py_ssize_t room)

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
