# C declarations for values.py (Cython's pure-Python mode: the .py is the code, this file
# only gives it C types). Read values.py; change the two together.
cimport cython


cpdef str kind_of(object value)
cpdef str categorical(object value)
cpdef object prediction_value(object prediction)

@cython.locals(prediction=dict)
cdef object _argmax(object prediction, bint checked)

cpdef object checked_argmax(object prediction)

