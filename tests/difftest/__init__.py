"""Differential testing: random valid kernels run on every target and compared with the reference interpreter."""
