"""cffi builder for lab._native (out-of-line API mode).

setup.py names this module in ``cffi_modules``; pip's build runs it.  The
cdef is the API headers (native/lab_native.h and one per family) as the C
preprocessor expands them, so the C files and Python always agree on one
declaration of each function, struct and enum.
"""

import glob
import os
import platform
import subprocess

from cffi import FFI

NATIVE = os.path.dirname(os.path.abspath(__file__))
# Headers the C files share but Python does not see; every other header is
# an API header (lab_native.h first, then one per family) and goes to cdef.
PRIVATE_HEADERS = {"internal.h", "compat_uring.h", "bpf_ring.h", "upcall_abi.h",
                   "upcall_internal.h"}
# pip builds quietly, so a warning would pass unseen: tests/test_native.py
# compiles every C file with these flags and -Werror
COMPILE_ARGS = ["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter",
                "-D_GNU_SOURCE"]


def api_headers():
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(NATIVE, "*.h")))
    names = [n for n in names if n not in PRIVATE_HEADERS and n != "lab_native.h"]
    return ["lab_native.h"] + names


def _cdef_text():
    # The preprocessor expands what cffi's parser cannot (an X-macro list
    # that declares a struct's counters once); #include lines go first,
    # because cffi knows the standard types and the system headers'
    # declarations would only be noise to it.
    text = []
    for name in api_headers():
        with open(os.path.join(NATIVE, name), encoding="utf-8") as f:
            text.append("".join(line for line in f if not line.lstrip().startswith("#include")))
    cc = os.environ.get("CC", "cc").split()
    out = subprocess.run(cc + ["-E", "-P", "-x", "c", "-"], input="\n".join(text),
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"native/build.py: preprocessing the API headers failed: {out.stderr.strip()}")
    return out.stdout


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())
ffibuilder.set_source(
    "lab._native",
    "".join(f'#include "{name}"\n' for name in api_headers()),
    # relative paths: setuptools wants sources inside the project tree
    sources=sorted(os.path.relpath(p) for p in glob.glob(os.path.join(NATIVE, "*.c"))),
    include_dirs=[os.path.relpath(NATIVE)],
    libraries=["uring", "pthread"],
    extra_compile_args=COMPILE_ARGS,
)

if platform.machine() not in ("x86_64", "AMD64"):
    # Builds anyway: everything but the fiber switch works elsewhere.
    print(f"upcall-lab: {platform.machine()}: fibers unsupported (x86-64 only)")

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
