"""A step's CPU kernels compiled by one clang run per compile worker, not one run per kernel.

tinygrad 0.14 compiles each CPU kernel on its own: C source in, `clang -c` out, one process a kernel.
Timed here on the README's default run (103 kernels in its first step, one by one; scratch, in
benchmarks/results/tinygrad-cpu.md, round 10): 7.0 s of clang against 8.9 s of tinygrad's own code
generation, an elementwise kernel costing 51 ms of clang (about 32 ms of it clang starting) against
35 ms of code generation. The same 110 sources in one translation unit compiled in 2.7 s; in two,
side by side, in 1.7 s. What it bought: the default run's first step on an empty kernel cache 11.1 s
against 14.3 s without it (`python -m benchmarks.cold_start`, cold-start-default.md).

So when a step has kernels to compile, `precompile` does it in two rounds before tinygrad's own
`lower_and_compile` runs (which then finds every kernel compiled):

1. tinygrad's code generation for each kernel, in the compile pool, stopping before clang;
2. one clang run per worker on its share of the sources, through tinygrad's own `ClangCompiler`
   (same flags), each kernel's function renamed to a unique name, since tinygrad's kernel names
   repeat (`E_16_4` for several kernels);
3. the object cut into one program per kernel (`split`): its function's bytes, followed by the
   read-only constants it reads, their PC-relative addresses patched. That is what tinygrad's
   `jit_loader` does for a one-kernel object, and the result is position-independent bytes that
   tinygrad's `CPUProgram` runs as they are (it links only what starts as an ELF file).

A kernel whose code `split` cannot place on its own (a call to an outside function, a relocation
other than PC-relative, constants that need relocating) is compiled alone as before, and so is
everything when clang rejects the combined file; other renderers, other CPUs (x86-64 only) and BEAM
searches take tinygrad's path. The machine code of each function is clang's for that function;
the tests run the same steps both ways and compare the results bit for bit.
`GPT_TINYGRAD_ONE_CLANG=0` turns it off.
"""

from __future__ import annotations

import copy
import os
import struct
import subprocess

from tinygrad.codegen import do_to_program, to_program_cache, to_program_context
from tinygrad.engine.worker import get_worker_pool
from tinygrad.helpers import PARALLEL, Context, diskcache_get, diskcache_put
from tinygrad.renderer.cstyle import ClangRenderer
from tinygrad.runtime.support.compiler_cpu import ClangCompiler
from tinygrad.uop.ops import Ops, UOp

ENABLED = os.environ.get("GPT_TINYGRAD_ONE_CLANG", "1") != "0"
NOT_COMPILED = b"not compiled yet"  # the BINARY of a program rendered in round 1
compiled_together = 0  # kernels this process compiled in combined files (for tests and benchmarks)

# ---- ELF64 little-endian, as clang writes an x86-64 object: the few records `split` reads
SECTION = struct.Struct("<IIQQQQIIQQ")  # name, type, flags, addr, offset, size, link, info, addralign, entsize
SYMBOL = struct.Struct("<IBBHQQ")  # name, info, other, section index, value, size
RELA = struct.Struct("<QQq")  # offset, info (symbol << 32 | type), addend
SHT_PROGBITS, SHT_SYMTAB, SHT_RELA = 1, 2, 4
SHF_EXECINSTR = 4
STT_FUNC = 2
R_X86_64_PC32, R_X86_64_PLT32 = 2, 4


class _Deferred:
    """A compiler that compiles nothing: round 1 keeps the source and leaves the binary to round 2."""

    def compile_cached(self, src: str) -> bytes:
        return NOT_COMPILED


def _render(task: tuple[int, UOp, ClangRenderer, dict]) -> tuple[int, UOp]:
    """Round 1 for one kernel (in a compile worker): tinygrad's code generation, its PROGRAM returned
    with the source and a placeholder binary. The renderer is a copy, so the real one keeps its compiler."""
    i, ast, renderer, context = task
    renderer = copy.copy(renderer)
    renderer.compiler = _Deferred()
    with Context(**context):
        return i, do_to_program(ast, renderer)


def _compile_together(task: tuple[ClangCompiler, list[tuple[str, str]]]) -> list[bytes | None]:
    """Round 2 for a share of the kernels (in a compile worker): their sources, as (function name, C),
    in one clang run; each kernel's program, or None where it must be compiled alone."""
    compiler, kernels = task
    unique = [f"gpt_kernel_{i}" for i in range(len(kernels))]
    # Each function renamed by the preprocessor, so that nothing else in its source changes.
    parts = [f"#define {name} {new}\n{src}\n#undef {name}\n" for (name, src), new in zip(kernels, unique)]
    try:
        obj = compiler.compile("\n".join(parts))
    except subprocess.CalledProcessError:  # clang refused the combined file (two kernels' definitions clash)
        return [None] * len(kernels)
    return [split(obj, name) for name in unique]


def _sections(obj: bytes) -> list[tuple]:
    shoff, shentsize, shnum = struct.unpack_from("<Q", obj, 0x28)[0], *struct.unpack_from("<HH", obj, 0x3A)
    return [SECTION.unpack_from(obj, shoff + i * shentsize) for i in range(shnum)]


def split(obj: bytes, function: str) -> bytes | None:
    """The program of `function` cut from the object `obj`: its code at offset 0, then each read-only
    section it reads, with the PC-relative references to them patched; None where that is not enough."""
    if obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:  # 64-bit little-endian only
        return None
    sections = _sections(obj)
    content = [obj[s[4] : s[4] + s[5]] for s in sections]
    symtab = next((i for i, s in enumerate(sections) if s[1] == SHT_SYMTAB), None)
    if symtab is None:
        return None
    names = content[sections[symtab][6]]  # the symbol table's string table (its sh_link)
    symbols = [SYMBOL.unpack_from(content[symtab], o) for o in range(0, len(content[symtab]), SYMBOL.size)]
    wanted = function.encode() + b"\0"
    found = [s for s in symbols if s[1] & 0xF == STT_FUNC and names[s[0] : s[0] + len(wanted)] == wanted]
    if len(found) != 1:
        return None
    _, _, _, text, start, size = found[0]
    relocated = {s[7] for s in sections if s[1] == SHT_RELA}  # the sections that have relocations
    code, placed = bytearray(content[text][start : start + size]), {}
    for rela in (i for i, s in enumerate(sections) if s[1] == SHT_RELA and s[7] == text):
        entries = (RELA.unpack_from(content[rela], o) for o in range(0, sections[rela][5], RELA.size))
        for offset, info, addend in entries:
            if not start <= offset < start + size:
                continue  # another function's
            _, _, _, target, value, _ = symbols[info >> 32]
            kind = sections[target] if 0 < target < len(sections) else None
            if (info & 0xFFFFFFFF) not in (R_X86_64_PC32, R_X86_64_PLT32) or kind is None or kind[1] != SHT_PROGBITS \
                    or kind[2] & SHF_EXECINSTR or target in relocated:
                return None  # an outside symbol, another function, an absolute address, constants with pointers
            if target not in placed:  # the section goes after the code, at its alignment
                code += bytes(-len(code) % max(kind[8], 1))
                placed[target] = len(code)
                code += content[target]
            where = offset - start
            distance = placed[target] + value + addend - where
            if not -(2**31) <= distance < 2**31:
                return None
            struct.pack_into("<i", code, where, distance)
    return None if code[:4] == b"\x7fELF" else bytes(code)  # tinygrad would take it for an object to link


def _clang_only(todo: dict[tuple, tuple[UOp, ClangRenderer]]) -> bool:
    """Whether every kernel of `todo` is for the C renderer on an x86-64 CPU, with no BEAM search
    (anything else keeps tinygrad's path)."""
    return all(
        type(renderer) is ClangRenderer and isinstance(renderer.compiler, ClangCompiler)
        and renderer.compiler.arch == "x86_64" and ast.op is Ops.SINK and not getattr(ast.arg, "beam", 0)
        for ast, renderer in todo.values()
    )


def precompile(todo: dict[tuple, tuple[UOp, ClangRenderer]]) -> None:
    """Compile the kernels of `todo` (compile-cache key -> (AST, renderer), as program_cache.uncompiled
    gives them), a few clang runs for all of them, into tinygrad's in-memory cache, where its
    `lower_and_compile` then finds them."""
    global compiled_together
    if not ENABLED or len(todo) < 2 or not _clang_only(todo):
        return
    pool = get_worker_pool()
    keys, context = list(todo), {v.key: v.value for v in to_program_context}
    # Round 1: code generation, kernel by kernel, each taken by whichever worker is free.
    tasks = ((i, *todo[key], context) for i, key in enumerate(keys))
    rendered: dict[int, UOp] = dict((map if pool is None else pool.imap_unordered)(_render, tasks))
    compiler = todo[keys[0]][1].compiler
    programs, sources = {}, {}
    for i, program in rendered.items():
        source = next(u.arg for u in program.src if u.op is Ops.SOURCE)
        if compiler.cachekey is not None and (lib := diskcache_get(compiler.cachekey, source)) is not None:
            programs[i] = _with_binary(program, lib)  # clang's output for this source, kept by an earlier run
        else:
            sources[i] = source
    # Round 2: one share of about equal source length per worker (clang's time grows with the source).
    shares: list[list[int]] = [[] for _ in range(1 if pool is None else max(1, min(PARALLEL.value, len(sources) // 8)))]
    lengths = [0] * len(shares)
    for i in sorted(sources, key=lambda i: -len(sources[i])):
        least = lengths.index(min(lengths))
        shares[least].append(i)
        lengths[least] += len(sources[i])
    shares = [share for share in shares if share]
    tasks2 = [(compiler, [(rendered[i].arg.function_name, sources[i]) for i in share]) for share in shares]
    for share, libs in zip(shares, (map if pool is None else pool.map)(_compile_together, tasks2)):
        for i, lib in zip(share, libs):
            if lib is None:
                lib = compiler.compile(sources[i])  # alone, as tinygrad compiles it
            else:
                compiled_together += 1
            if compiler.cachekey is not None:  # kept as tinygrad's compile_cached keeps clang's output
                diskcache_put(compiler.cachekey, sources[i], lib)
            programs[i] = _with_binary(rendered[i], lib)
    for i, key in enumerate(keys):
        to_program_cache[key] = programs[i]


def _with_binary(program: UOp, lib: bytes) -> UOp:
    assert program.src[-1].op is Ops.BINARY and program.src[-1].arg == NOT_COMPILED, "round 1 left a binary"
    return program.replace(src=(*program.src[:-1], UOp(Ops.BINARY, arg=lib)))
