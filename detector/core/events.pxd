# C declarations for events.py (Cython's pure-Python mode: the .py is the code, this file
# only gives it C types). Read events.py; change the two together.
cimport cython


cdef class PredictionEvent:
    cdef public object event_id
    cdef public object model
    cdef public object model_version
    cdef public long long timestamp_ms
    cdef public object features
    cdef public object prediction
    cdef public object label
    cdef public object segment


cpdef long long timestamp_ms(object value) except? -1

@cython.locals(number=cython.longlong, i=Py_ssize_t, c=cython.longlong)
cdef long long _digits(str text, Py_ssize_t start, Py_ssize_t count) noexcept

@cython.locals(era=cython.longlong, yoe=cython.longlong, doy=cython.longlong, doe=cython.longlong)
cdef long long _days_from_civil(long long year, long long month, long long day) noexcept

cdef long long _month_days(long long year, long long month) noexcept

@cython.locals(
    n=Py_ssize_t, year=cython.longlong, month=cython.longlong, day=cython.longlong,
    hour=cython.longlong, minute=cython.longlong, second=cython.longlong, pos=Py_ssize_t,
    first=Py_ssize_t, millis=cython.longlong, offset=cython.longlong,
    off_hour=cython.longlong, off_minute=cython.longlong, seconds=cython.longlong,
    ms=cython.longlong,
)
cpdef long long rfc3339_ms(str text) except? -2

cdef object _MISSING, _READ

cpdef str required_str(dict doc, str key)

cdef str _required(object value, str key)

cpdef object check_segment(object segment)

cpdef object parse_event(object value, Py_ssize_t max_bytes=*, bint check_features=*)

@cython.locals(fields=dict)
cpdef PredictionEvent _parse_doc(object doc, bint check_features)

@cython.locals(ts=cython.longlong, event=PredictionEvent)
cpdef PredictionEvent event_of(
    object version, object event_id, object model, object model_version, object stamp,
    object features, object prediction, object label, object segment, bint check_features,
)
