# C declarations for estimation.py (Cython's pure-Python mode: the .py is the code, this
# file only gives it C types). Read estimation.py; change the two together.
cimport cython

from detector.core.detectors cimport Detector
from detector.core.trackers cimport Ring

cdef Py_ssize_t _TABLE


@cython.locals(x=double)
cpdef Py_ssize_t score_bin(double score) noexcept


@cython.locals(
    xs=cython.double[::1], ys=cython.double[::1], means=cython.double[::1],
    weights=cython.double[::1], centers=cython.double[::1], n=Py_ssize_t, top=Py_ssize_t,
    i=Py_ssize_t, w=double,
)
cpdef tuple isotonic(object scores, object labels)


cdef class EstimatedPerformance:
    cdef public str fingerprint
    cdef public Py_ssize_t reference_size
    cdef public Py_ssize_t ref_size
    cdef public Py_ssize_t window_size
    cdef public double threshold
    cdef public long long k
    cdef public double scale
    cdef public Detector detector
    cdef public object rearm
    cdef public list calibrating_scores
    cdef public list calibrating_labels
    cdef public object table
    cdef public const double[::1] _bins
    cdef public object realized_reference
    cdef public list reference
    cdef public Ring current
    cdef public double acc
    cdef public long long cnt
    cdef public long long seen

    cpdef learn(self, double score, long long positive)

    @cython.locals(q=double, block=double)
    cpdef object observe(self, double score, Py_ssize_t index)

    @cython.locals(p=double)
    cpdef double right(self, double score)
