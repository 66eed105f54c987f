"""Build of the compiled matching core (everything else is in pyproject.toml)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "engine.native._hxcore",
            sources=["engine/native/_hxcore.c"],
            depends=["engine/native/hx_wire.h"],  # generated: python -m engine.native.codegen
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
