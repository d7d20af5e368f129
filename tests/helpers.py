"""Shared test helpers."""

import os

import pytest

# Privileged tests skip unless root; UPCALL_LAB_FORCE_ROOT_TESTS=1 runs them
# anyway (to see how they fail without privileges).
FORCE_ROOT = os.environ.get("UPCALL_LAB_FORCE_ROOT_TESTS") == "1"
requires_root = pytest.mark.skipif(os.geteuid() != 0 and not FORCE_ROOT,
                                   reason="needs root (UPCALL_LAB_FORCE_ROOT_TESTS=1 forces)")
