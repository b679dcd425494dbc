# The kernel interface of _layout.py as C declarations, for _cython_kernels.pyx: the records
# field for field, the codes and the size rules. The extension checks every line here
# against _layout.py when it is imported (_check_layout), so a drift fails at once.
from libc.stdint cimport int64_t

ctypedef struct Hyper:      # _layout.HYPER
    int64_t rule
    double momentum
    double l2
    double beta_1
    double beta_2
    double epsilon

ctypedef struct Plateau:    # _layout.PLATEAU
    double tol
    int64_t patience
    double best
    int64_t count
    double scale

ctypedef struct Outcome:    # _layout.OUTCOME
    int64_t epochs
    int64_t t
    int64_t event

cdef enum Activation:       # _layout.Activation
    IDENTITY = 0
    LOGISTIC = 1
    TANH = 2
    RELU = 3
    LEAKY_RELU = 4
    SOFTMAX = 5

cdef enum Loss:             # _layout.Loss
    SQUARED_ERROR = 0
    CROSS_ENTROPY = 1
    BINARY_CROSS_ENTROPY = 2

cdef enum Event:            # _layout.Event
    COMPLETED = 0
    PLATEAU = 1
    DIVERGED = 2

cdef enum Update:           # _layout.Update
    SGD = 0
    MOMENTUM = 1
    NESTEROV = 2
    ADAM = 3

cdef enum:                  # _layout.SIZE_RULES
    SMALL_WORK = 1024
    BLOCK_BYTES = 1048576
    MIN_BLOCK_ROWS = 256
    NARROW_OUT = 16
    NARROW_WORDS = 4096
    SLICE_ALIGN = 16
