"""The suite's fits use the default thread count whatever else runs on the machine: a thread
count that followed the load (fastmlp.set_config(adaptive_threads=...)) would make a large
network's BLAS-threaded sums, and so bitwise comparisons, depend on it. test_threads.py
turns the adaptation on where it is under test."""
import os

os.environ.setdefault("FASTMLP_ADAPTIVE_THREADS", "0")
