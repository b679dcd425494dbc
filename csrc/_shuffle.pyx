# cython: language_level=3, boundscheck=False, wraparound=False
"""Epoch row orders drawn natively, exactly as numpy.random.RandomState.shuffle draws them.

scikit-learn's MLP shuffles its sample indices once per epoch with
sklearn.utils.shuffle(idx, random_state=rng), i.e. RandomState.shuffle: a Fisher–Yates pass,
i from n-1 down to 1 swapping i with random_interval(i) (numpy's masked rejection on the
generator's 32-bit output). The same swaps run here in C on the same generator, so the
permutations and the generator's state afterwards are exactly those of the Python calls
(tests/test_estimators.py checks both). numpy's MT19937 (every RandomState's, unless built on
another BitGenerator) is run here from its state, read and written back through its public
`state` property; any other BitGenerator is called through its capsule, under its lock.
MT19937 runs inline rather than through its capsule because the per-epoch draw then costs
about half of the Python shuffle's; the time is bounded by the rejection loop's
data-dependent branch, not by the generator. To measure it: python -m timeit -s "import
numpy as np; from fastmlp._shuffle import shuffled_orders; r = np.random.RandomState(0);
i = np.arange(1347); out = np.empty((64, 1347), np.int64)" "shuffled_orders(r, i, out)"
(÷ 64 epochs), beside the same timeit of fastmlp.training._shuffled(i, r).
"""
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdint cimport int64_t, uint32_t, uint64_t
from numpy.random cimport bitgen_t
import numpy as np

# MT19937 as numpy's mt19937.c generates it (the Mersenne Twister reference algorithm).
cdef enum:
    MT_N = 624
    MT_M = 397
cdef uint32_t MT_MATRIX_A = 0x9908b0dfu, MT_UPPER = 0x80000000u, MT_LOWER = 0x7fffffffu
cdef uint32_t MT_TEMPER_B = 0x9d2c5680u, MT_TEMPER_C = 0xefc60000u


cdef struct MTState:
    uint32_t key[MT_N]
    uint32_t out[MT_N]  # key tempered: the generator's next outputs are out[pos:]


cdef inline uint32_t _temper(uint32_t y) noexcept nogil:
    y ^= y >> 11
    y ^= (y << 7) & MT_TEMPER_B
    y ^= (y << 15) & MT_TEMPER_C
    y ^= y >> 18
    return y


cdef void _mt_temper_all(MTState* mt) noexcept nogil:
    cdef int i
    for i in range(MT_N):
        mt.out[i] = _temper(mt.key[i])


cdef void _mt_refill(MTState* mt) noexcept nogil:
    """numpy's mt19937_gen: the next 624 words of the key; then tempered into out."""
    cdef int i
    cdef uint32_t y
    for i in range(MT_N - MT_M):
        y = (mt.key[i] & MT_UPPER) | (mt.key[i + 1] & MT_LOWER)
        mt.key[i] = mt.key[i + MT_M] ^ (y >> 1) ^ (-(y & 1) & MT_MATRIX_A)
    for i in range(MT_N - MT_M, MT_N - 1):
        y = (mt.key[i] & MT_UPPER) | (mt.key[i + 1] & MT_LOWER)
        mt.key[i] = mt.key[i + (MT_M - MT_N)] ^ (y >> 1) ^ (-(y & 1) & MT_MATRIX_A)
    y = (mt.key[MT_N - 1] & MT_UPPER) | (mt.key[0] & MT_LOWER)
    mt.key[MT_N - 1] = mt.key[MT_M - 1] ^ (y >> 1) ^ (-(y & 1) & MT_MATRIX_A)
    _mt_temper_all(mt)


cdef inline uint64_t _mask(uint64_t high) noexcept nogil:
    """The smallest 2^k - 1 >= high."""
    cdef uint64_t mask = high
    mask |= mask >> 1
    mask |= mask >> 2
    mask |= mask >> 4
    mask |= mask >> 8
    mask |= mask >> 16
    mask |= mask >> 32
    return mask


cdef inline uint64_t _interval(bitgen_t* bitgen, uint64_t high) noexcept nogil:
    """numpy's random_interval: uniform on [0, high], masked rejection sampling."""
    cdef uint64_t mask = _mask(high), value
    if high == 0:
        return 0
    if high <= <uint64_t>0xFFFFFFFFu:
        value = bitgen.next_uint32(bitgen.state) & mask
        while value > high:
            value = bitgen.next_uint32(bitgen.state) & mask
    else:
        value = bitgen.next_uint64(bitgen.state) & mask
        while value > high:
            value = bitgen.next_uint64(bitgen.state) & mask
    return value


cdef inline void _swap(int64_t* row, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    cdef int64_t value = row[j]
    row[j] = row[i]
    row[i] = value


cdef void _bitgen_shuffle(bitgen_t* bitgen, int64_t* row, Py_ssize_t n) noexcept nogil:
    """RandomState.shuffle's Fisher–Yates pass on row[:n], drawing through the BitGenerator."""
    cdef Py_ssize_t i
    for i in range(n - 1, 0, -1):
        _swap(row, i, <Py_ssize_t>_interval(bitgen, <uint64_t>i))


cdef int _mt_shuffle(MTState* mt, int pos, int64_t* row, Py_ssize_t n) noexcept nogil:
    """RandomState.shuffle's Fisher–Yates pass on row[:n], drawing from mt at position pos
    (kept in a register: the loop is bound by it); returns the new position."""
    cdef Py_ssize_t i
    cdef uint32_t mask, value
    for i in range(n - 1, 0, -1):
        mask = <uint32_t>_mask(<uint64_t>i)
        while True:  # numpy's random_interval: masked rejection
            if pos == MT_N:
                _mt_refill(mt)
                pos = 0
            value = mt.out[pos] & mask
            pos += 1
            if value <= <uint32_t>i:
                break
        _swap(row, i, value)
    return pos


def shuffled_orders(rng, const int64_t[::1] start, int64_t[:, ::1] out):
    """out[e] = out[e-1] shuffled (start for e = 0), as rng.shuffle shuffles: the orders and
    random draws of out.shape[0] calls of sklearn.utils.shuffle(idx, random_state=rng).

    numpy's MT19937 runs here, from its state read and written back through the public
    `state` property (tempered a block at a time, the draw position in a register); any
    other BitGenerator is called through its capsule."""
    bit_generator = rng._bit_generator
    cdef bitgen_t* bitgen = <bitgen_t*>PyCapsule_GetPointer(bit_generator.capsule,
                                                            "BitGenerator")
    cdef Py_ssize_t n = start.shape[0], e, i
    cdef bint inlined = type(bit_generator) is np.random.MT19937 and n <= <Py_ssize_t>0xFFFFFFFF
    cdef MTState mt
    cdef int pos = 0
    cdef uint32_t[::1] key
    if out.shape[1] != n:
        raise ValueError(f"out has {out.shape[1]} columns, start has {n}")
    with bit_generator.lock:
        if inlined:
            state = bit_generator.state
            key = np.ascontiguousarray(state["state"]["key"], dtype=np.uint32)
            for i in range(MT_N):
                mt.key[i] = key[i]
            pos = state["state"]["pos"]
            _mt_temper_all(&mt)
        with nogil:
            for e in range(out.shape[0]):
                for i in range(n):
                    out[e, i] = start[i] if e == 0 else out[e - 1, i]
                if inlined:
                    pos = _mt_shuffle(&mt, pos, &out[e, 0], n)
                else:
                    _bitgen_shuffle(bitgen, &out[e, 0], n)
        if inlined:
            key = np.empty(MT_N, np.uint32)
            for i in range(MT_N):
                key[i] = mt.key[i]
            bit_generator.state = {"bit_generator": "MT19937",
                                   "state": {"key": np.asarray(key), "pos": pos}}
