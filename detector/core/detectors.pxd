# C declarations for detectors.py (Cython's pure-Python mode: the .py is the code, this
# file only gives it C types). Read detectors.py; change the two together.
cimport cython


cdef class Detector:
    cpdef bint step(self, double x) except -1


cdef class Adwin(Detector):
    # What every step touches first, the rest after.
    cdef bint detected
    cdef bint zeros_only
    cdef long long tick
    cdef long long clock
    cdef double total
    cdef double variance
    cdef double width
    cdef double total_width
    cdef long long n_buckets
    cdef long long max_n_buckets
    cdef long long max_buckets
    cdef Py_ssize_t rows
    cdef double grace_period
    cdef Py_ssize_t capacity
    cdef long long n_detections
    cdef double delta
    cdef double min_window_length
    cdef readonly dict _params
    cdef long long[::1] lengths
    cdef double[:, ::1] totals
    cdef double[:, ::1] variances

    cpdef bint step(self, double x) except -1
    cdef void _reset(self)
    cdef void _allocate(self, Py_ssize_t rows, Py_ssize_t capacity)
    cdef void _grow(self)

    @cython.locals(row_len=Py_ssize_t, delta_v=double, incremental=double)
    cdef void _insert(self, double value)

    @cython.locals(
        idx=Py_ssize_t, full=Py_ssize_t, nxt=Py_ssize_t, n1=double, t0=double, t1=double,
        v0=double, v1=double, mu1=double, mu2=double, total12=double, temp=double, v12=double,
    )
    cdef void _compress(self)

    @cython.locals(length=Py_ssize_t, k=Py_ssize_t)
    cdef void _drop(self, Py_ssize_t row, Py_ssize_t count)

    @cython.locals(
        last=Py_ssize_t, n=double, u=double, v=double, mu=double, mu_window=double,
        incremental=double,
    )
    cdef void _delete_oldest(self)

    @cython.locals(change=bint, reduce_width=bint, delta_prime=double, spread=double)
    cdef bint _detect_change(self) except -1

    @cython.locals(
        n0=double, n1=double, u0=double, u1=double, least=double, idx=Py_ssize_t,
        size=double, length=Py_ssize_t, k=Py_ssize_t, total=double, delta_mean=double,
        m_recip=double, linear=double, epsilon=double,
    )
    cdef bint _cut(self, double delta_prime, double spread) except -1


cdef class RiverDetector(Detector):
    cdef readonly str name
    cdef readonly object det

    cpdef bint step(self, double x) except -1


cdef class BinaryDetector(Detector):
    cdef readonly str name
    cdef readonly object det
    cdef bint inverted

    cpdef bint step(self, double x) except -1
