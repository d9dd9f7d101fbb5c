"""Build of the one optional C extension; everything else is declared in pyproject.toml.

``nat._mmsg_ext`` (recvmmsg/sendmmsg for the relay's UDP hot path) is ``optional``: where it
cannot be compiled (no C compiler or Python headers, not Linux) the install still succeeds and
the relay uses its pure-Python path (see nat/_mmsg.py).
"""

import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith("linux"):  # recvmmsg(2)/sendmmsg(2) are Linux system calls
    extensions.append(
        Extension(
            "nat._mmsg_ext",
            sources=["nat/_mmsg_ext.c"],
            optional=True,
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    )

setup(ext_modules=extensions)
