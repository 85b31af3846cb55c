# C declarations for performance.py (Cython's pure-Python mode: the .py is the code, this
# file only gives it C types). Read performance.py; change the two together.
cimport cython

from detector.core.estimation cimport EstimatedPerformance
from detector.core.trackers cimport RateTracker, Ring


@cython.locals(t=type)
cdef bint _number(object value) noexcept

cpdef object binary_label(object label)

cpdef object score_of(object prediction)


cdef class PerformanceTracker:
    cdef public str fingerprint
    cdef public RateTracker rate
    cdef public double threshold
    cdef public double quantile
    cdef public Py_ssize_t reference_size
    cdef public Py_ssize_t window_size
    cdef public object cutoff
    cdef public list building
    cdef public list reference
    cdef public Ring wrong
    cdef public Ring scores
    cdef public Ring positives
    cdef public long long labelled

    cpdef void _empty_window(self)

    cdef void _keep(self, long long wrong, double score, long long positive) noexcept

    cpdef list current(self)

    cpdef object error(self, object prediction, object label)

    @cython.locals(fired=cython.longlong, observed=tuple, wrong=cython.longlong, positive=cython.longlong)
    cpdef object observe(
        self, object prediction, object label, Py_ssize_t index,
        EstimatedPerformance estimation=*,
    )
