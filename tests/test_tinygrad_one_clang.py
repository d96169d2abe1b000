"""Kernels compiled by one clang run for many (backends/tinygrad/one_clang.py): a training step, an
evaluation and a cached decode give the same bits as with each kernel compiled alone, and `split`
cuts a function out of an object so that it runs on its own, or refuses where it cannot."""

from __future__ import annotations

import ctypes
import mmap

import numpy as np
import pytest

from tests.tinygrad_helpers import differing, one_clang_applies, run_tiny_model

pytest.importorskip("tinygrad")
if not one_clang_applies():
    pytest.skip("one_clang.py serves tinygrad's C renderer on x86-64, with clang", allow_module_level=True)


def test_kernels_compiled_together_give_the_bits_of_kernels_compiled_alone(tmp_path):
    together = run_tiny_model(tmp_path / "together.db", GPT_TINYGRAD_ONE_CLANG="1")
    alone = run_tiny_model(tmp_path / "alone.db", GPT_TINYGRAD_ONE_CLANG="0")
    # tinygrad's own path, finding the cut programs in its clang cache where the first run left them
    reused = run_tiny_model(tmp_path / "together.db", GPT_TINYGRAD_ONE_CLANG="0", GPT_TINYGRAD_PROGRAM_CACHE="0")
    assert together["together"] > 10 and alone["together"] == reused["together"] == reused["loaded"] == 0
    assert differing(together, alone, reused) == []


# Two functions reading constants (a vector of four floats, scalars), and one calling outside code.
VECTOR = "typedef float float4 __attribute__((aligned(16),ext_vector_type(4)));\n"
FUNCTIONS = {
    "scale_add": VECTOR + """void scale_add(float* restrict out, float* restrict in) {
  for (int i = 0; i < 64; i += 4) {
    float4 x = *((float4*)(in + i));
    *((float4*)(out + i)) = x * (float4){1.5f, 2.5f, 3.5f, 4.5f} + (float4){0.25f, 0.5f, 0.75f, 1.0f};
  }
}""",
    "affine": """void affine(float* restrict out, float* restrict in) {
  for (int i = 0; i < 64; i++) out[i] = in[i] * 0.1234567f - 9.875f;
}""",
    "calls_out": """float outside(float);
void calls_out(float* restrict out, float* restrict in) { out[0] = outside(in[0]); }""",
}


def _compile(source: str) -> bytes:
    from tinygrad import Device

    return Device["CPU"].renderer.compiler.compile(source)  # tinygrad's own clang command


def _call(code: bytes, x: np.ndarray) -> np.ndarray:
    """Run position-independent machine code `code` as f(out, in), as tinygrad's CPUProgram runs it."""
    memory = mmap.mmap(-1, len(code), prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    memory.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    out = np.zeros_like(x)
    ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(address)(out.ctypes.data, x.ctypes.data)
    return out


def test_split_cuts_each_function_with_its_constants():
    """Cut from one object of all three, each function computes what it computes compiled alone (and
    linked as tinygrad links it), bit for bit, and what its C says (to float32 round-off: clang fuses
    the multiply-adds)."""
    from tinygrad.runtime.support.elf import jit_loader

    from backends.tinygrad.one_clang import split

    obj = _compile("\n".join(FUNCTIONS.values()))
    x = np.arange(64, dtype=np.float32) / 7
    expected = {
        "scale_add": x * np.tile(np.float32([1.5, 2.5, 3.5, 4.5]), 16) + np.tile(np.float32([0.25, 0.5, 0.75, 1]), 16),
        "affine": x * np.float32(0.1234567) - np.float32(9.875),
    }
    for name, want in expected.items():
        cut = _call(split(obj, name), x)
        np.testing.assert_array_equal(cut, _call(jit_loader(_compile(FUNCTIONS[name])), x))
        np.testing.assert_allclose(cut, want, rtol=1e-6)


def test_split_refuses_what_it_cannot_place_alone():
    from backends.tinygrad.one_clang import split

    obj = _compile("\n".join(FUNCTIONS.values()))
    assert split(obj, "calls_out") is None  # a call to a function outside the object
    assert split(obj, "no_such_function") is None
    assert split(b"not an object", "affine") is None


def test_sources_that_clash_in_one_file_are_left_to_compile_alone():
    from tinygrad import Device

    from backends.tinygrad.one_clang import _compile_together

    clashing = "static float helper(float x) { return x + %s; }\n" "void k(float* out) { out[0] = helper(out[0]); }"
    compiler = Device["CPU"].renderer.compiler
    assert _compile_together((compiler, [("k", clashing % "1.0f"), ("k", clashing % "2.0f")])) == [None, None]
    fine = _compile_together((compiler, [("affine", FUNCTIONS["affine"]), ("scale_add", FUNCTIONS["scale_add"])]))
    assert all(isinstance(code, bytes) for code in fine)
