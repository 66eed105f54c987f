"""Build of the compiled parts (everything else is in pyproject.toml): the matching core, the risk
core, the margin recompute, the ring's atomic words, the settlement tree's hashing and the
gateway's replay-buffer reading."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        Extension(
            "engine.native._hxcore",
            sources=["engine/native/_hxcore.c"],
            depends=["engine/native/hx_wire.h"],  # generated: python -m engine.native.codegen
            extra_compile_args=FLAGS,
        ),
        Extension(
            "engine.native._hxrisk",
            sources=["engine/native/_hxrisk.c"],
            depends=["engine/native/hx_wire.h", "engine/native/hx_risk.h"],  # both generated (codegen)
            extra_compile_args=FLAGS,
        ),
        Extension(
            "engine.native._hxmargin",
            sources=["engine/native/_hxmargin.c"],
            depends=["engine/native/hx_wire.h"],
            extra_compile_args=[*FLAGS, "-O3", "-ffp-contract=off"],  # no FMA: the same doubles as numpy
        ),
        Extension("engine.native._hxring", sources=["engine/native/_hxring.c"], extra_compile_args=FLAGS),
        Extension(
            "settlement.native._hxtree", sources=["settlement/native/_hxtree.c"], extra_compile_args=FLAGS
        ),
        Extension(
            "gateway.native._hxreplay", sources=["gateway/native/_hxreplay.c"], extra_compile_args=FLAGS
        ),
    ]
)
