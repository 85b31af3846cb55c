# C declarations for engine.py (Cython's pure-Python mode: the .py is the code, this file
# only gives it C types). Read engine.py; change the two together.
cimport cython

from detector.core.events cimport PredictionEvent, event_of, parse_event
from detector.core.jsonscan cimport Cursor, Texts
from detector.core.estimation cimport EstimatedPerformance
from detector.core.performance cimport PerformanceTracker, score_of
from detector.core.trackers cimport CategoricalTracker, NumericTracker, RateTracker
from detector.core.values cimport categorical, prediction_value

cdef int IGNORED, NUMERIC, CATEGORICAL, NULL_ONLY, CONFIGURED
cdef long long _SWEEP_EVERY
cdef int _STRING, _NUMBER, _TRUE, _FALSE, _NULL, _KEY
cdef object _GIVE_UP, _MISSING, _READ
cdef Py_ssize_t _TEXTS, _NAMES
cdef int _VERSION, _EVENT_ID, _MODEL, _MODEL_VERSION, _TIMESTAMP, _FEATURES, _PREDICTION
cdef int _LABEL, _SEGMENT


cdef class FeatureMonitor:
    cdef public str fingerprint
    cdef public object kind
    cdef public long long last_seen_ms
    cdef public RateTracker missing
    cdef public object values


cdef class ModelState:
    cdef public dict features
    cdef public object prediction_kind
    cdef public FeatureMonitor prediction
    cdef public object performance
    cdef public object estimation
    cdef public dict fairness
    cdef public long long latest_ms
    cdef public long long events
    cdef public long long refused


cdef int _slot_kind(FeatureMonitor monitor, object configured) except -1

@cython.locals(t=type)
cdef bint _fits(int kind, object value) noexcept


@cython.final
cdef class Layout:
    cdef str model
    cdef public str base
    cdef public object segment
    cdef ModelState state
    cdef list keys
    cdef dict index
    cdef list raw_keys
    cdef list heads
    cdef list texts
    cdef Py_ssize_t slots
    cdef int[::1] kinds
    cdef Py_ssize_t[::1] ranks
    cdef Py_ssize_t[::1] order
    cdef long long[::1] stamp
    cdef long long epoch
    cdef list monitors
    cdef list numbers
    cdef Py_ssize_t count
    cdef int[::1] nulls
    cdef list given
    cdef double[::1] xs
    cdef Py_ssize_t[::1] todo
    cdef Py_ssize_t pending
    cdef FeatureMonitor prediction
    cdef bint prediction_numeric
    cdef Py_ssize_t prediction_rank
    cdef PerformanceTracker error
    cdef Py_ssize_t processed

    @cython.locals(
        features=dict, p=Py_ssize_t, j=Py_ssize_t, kind=int, found=object,
    )
    cdef bint admits(self, PredictionEvent event) except -1

    @cython.locals(
        epoch=cython.longlong, p=Py_ssize_t, j=Py_ssize_t, kind=int, token=int, c=int,
    )
    cdef bint scan(self, Cursor cursor) except -1

    @cython.locals(j=Py_ssize_t, found=object)
    cdef Py_ssize_t _find(self, Cursor cursor, Py_ssize_t after) except -2

    @cython.locals(t=type, numbers=NumericTracker)
    cdef bint takes(self, object prediction, object label) except -1

    cdef void _begin(self) noexcept

    @cython.locals(numbers=NumericTracker)
    cdef int _store(self, Py_ssize_t p, Py_ssize_t j, bint null, double x, object given) except -1

    @cython.locals(q=Py_ssize_t, p=Py_ssize_t, numbers=NumericTracker)
    cdef void _ready(self, Py_ssize_t count, object prediction) noexcept

    cdef void flush(self, PartitionDetectors engine, object result) except *


@cython.locals(initial=int)
cdef int _field(Cursor cursor) noexcept

cdef list _add(list hits, Py_ssize_t rank, int sub, str name, object hit)


cdef class PartitionDetectors:
    cdef public object settings
    cdef public str topic
    cdef public long long partition
    cdef public dict models
    cdef dict _layouts
    cdef dict _slice_layouts
    cdef set _dirty
    cdef dict _slices
    cdef dict _slice_index
    cdef set _gone
    cdef Py_ssize_t _max_bytes
    cdef public long long full_admissions
    cdef public long long parsed_events
    cdef public object join
    cdef public str labels_topic
    cdef bint _segmenting
    cdef bint _slicing
    cdef bint _protecting
    cdef bint _estimating
    cdef Cursor _cursor
    cdef Texts _names
    cdef Texts _versions
    cdef Layout _scanned

    @cython.locals(i=Py_ssize_t, layout=Layout)
    cpdef object process_batch(self, object offsets, object values, object timestamps=*)

    @cython.locals(event=PredictionEvent, layout=Layout)
    cdef void _event(
        self, object offset, object raw, object timestamps, Py_ssize_t index, object result,
        list touched,
    ) except *

    @cython.locals(
        cursor=Cursor, layout=Layout, features_at=Py_ssize_t, seen=int, field=int, token=int,
        c=int, event=PredictionEvent,
    )
    cdef PredictionEvent _scan(self, object raw)

    @cython.locals(layout=Layout, state=ModelState)
    cdef void _feed_slices(
        self, PredictionEvent event, object offset, Py_ssize_t index, object result,
        list touched,
    ) except *

    cdef void _reject(
        self, object offset, object raw, object timestamps, Py_ssize_t index, object exc,
        object result,
    ) except *

    @cython.locals(
        state=ModelState, ts=cython.longlong, hits=list, p=Py_ssize_t, j=Py_ssize_t,
        kind=int, monitor=FeatureMonitor, numbers=NumericTracker,
        categories=CategoricalTracker, epoch=cython.longlong, estimation=EstimatedPerformance,
        null=bint,
    )
    cdef object _feed(
        self, Layout layout, PredictionEvent event, object offset, Py_ssize_t index,
        object result,
    )

    @cython.locals(state=ModelState, monitor=FeatureMonitor)
    cpdef ModelState _admit(self, PredictionEvent event, object result, object base=*)

    cdef PerformanceTracker _performance(self, ModelState state, str name)

    cdef EstimatedPerformance _estimation(self, ModelState state)

    cpdef Py_ssize_t _expire(self, str model, ModelState state, long long now_ms) except -1
