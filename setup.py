# The cffi extension needs setup(cffi_modules=...), which pyproject.toml
# cannot express; everything else lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/build.py:ffibuilder"])
