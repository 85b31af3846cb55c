# C declarations for trackers.py (Cython's pure-Python mode: the .py is the code, this file
# only gives it C types). Read trackers.py; change the two together.
cimport cython

from detector.core.detectors cimport Detector


cdef extern from *:
    # GCC's and Clang's: start loading the cache line of addr, without waiting for it.
    void prefetch "__builtin_prefetch"(const void *addr) noexcept nogil


cdef Py_ssize_t _RANK_WINDOW


cdef Py_ssize_t _slot(Py_ssize_t head, Py_ssize_t cap) noexcept nogil


@cython.locals(base=Py_ssize_t, half=Py_ssize_t)
cdef Py_ssize_t _left(const double[::1] ref, Py_ssize_t start, Py_ssize_t n, double x) noexcept nogil


@cython.locals(base=Py_ssize_t, half=Py_ssize_t)
cdef Py_ssize_t _right(const double[::1] ref, Py_ssize_t start, Py_ssize_t n, double x) noexcept nogil


@cython.final
cdef class Ring:
    cdef double[::1] values
    cdef readonly Py_ssize_t size
    cdef Py_ssize_t head
    cdef readonly Py_ssize_t filled

    cpdef void add(self, double x) noexcept

    cpdef void clear(self) noexcept

    cpdef list ordered(self)


cdef class Tracker:
    cpdef object push(self, object value, Py_ssize_t index)


cdef class RateTracker(Tracker):
    # What every observation touches first (one cache line, or two), the rest after.
    cdef long long cnt
    cdef long long acc
    cdef readonly long long k
    cdef readonly long long seen
    cdef double scale
    cdef readonly Detector detector
    cdef long long ref_blocks
    cdef long long ref_sum
    cdef long long ref_len
    cdef Py_ssize_t recent_head
    cdef Py_ssize_t recent_len
    cdef public str drift_type
    cdef public bint rising
    cdef readonly long long fired
    cdef object rearm
    cdef long long[::1] recent  # block counts, a ring

    cpdef object push(self, object value, Py_ssize_t index)

    @cython.locals(count=cython.longlong, cap=Py_ssize_t)
    cdef object flag(self, bint flag, Py_ssize_t index)

    cdef object _hit(self, Py_ssize_t index)

    @cython.locals(total=cython.longlong, i=Py_ssize_t)
    cpdef tuple rates(self)


cdef class NumericTracker(Tracker):
    # What every observation touches first (one cache line, or two), the rest after.
    cdef long long cnt
    cdef long long sum_a
    cdef long long sum_b
    cdef readonly long long k
    cdef readonly long long seen
    cdef Py_ssize_t since
    cdef Py_ssize_t size
    cdef Py_ssize_t buckets
    cdef Py_ssize_t cap
    cdef Py_ssize_t recent_head
    cdef Py_ssize_t recent_len
    cdef double hint_x  # prepare's value and its bucket, for the next _ranks
    cdef Py_ssize_t hint_bucket
    cdef bint hinted
    cdef readonly object reference
    cdef double ca
    cdef double cb
    cdef readonly Detector mean_det
    cdef readonly Detector spread_det
    cdef double scale
    cdef readonly object spec
    cdef long long ref_size
    cdef readonly object drift_type
    cdef long long window
    cdef list building
    cdef object rearm
    cdef const double[::1] ref
    cdef const double[::1] fences  # the last value of each bucket of 8 reference values
    cdef double[::1] recent  # a ring of the last max(window, RANK_WINDOW) values

    cdef void _learn(self)
    cdef void _bind(self)
    cpdef object push(self, object value, Py_ssize_t index)

    @cython.locals(i=Py_ssize_t)
    cdef void fetch(self) noexcept

    @cython.locals(bucket=Py_ssize_t)
    cpdef void prepare(self, double x) noexcept

    @cython.locals(a=cython.longlong, fired_mean=bint, fired_spread=bint)
    cdef object number(self, double x, Py_ssize_t index)

    @cython.locals(bucket=Py_ssize_t, start=Py_ssize_t, left=Py_ssize_t)
    cdef long long _ranks(self, double x) noexcept

    @cython.locals(total=cython.longlong, value=double, u_mean=double, is_location=bint)
    cdef object _hit(self, Py_ssize_t index, bint fired_mean)

    cdef object _recent(self, Py_ssize_t count)


cdef class CategoricalTracker(Tracker):
    # What every observation touches first (one cache line, or two), the rest after.
    cdef long long cnt
    cdef readonly long long k
    cdef readonly long long seen
    cdef list recent  # a ring of the last `window` values
    cdef Py_ssize_t recent_head
    cdef Py_ssize_t recent_len
    cdef long long window
    cdef readonly object ref_counts
    cdef readonly dict codes
    cdef readonly list detectors
    cdef double scale
    cdef readonly object spec
    cdef readonly object settings
    cdef long long ref_size
    cdef readonly str drift_type
    cdef list building
    cdef object rearm
    cdef long long[::1] counts

    cdef void _learn(self)
    cpdef object push(self, object value, Py_ssize_t index)

    @cython.locals(width=Py_ssize_t, code=Py_ssize_t, c=Py_ssize_t, fired=Py_ssize_t, det=Detector)
    cdef object category(self, str value, Py_ssize_t index)

    cdef object _hit(self, Py_ssize_t index, Py_ssize_t fired)
    cdef list _recent(self)
