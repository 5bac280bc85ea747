"""Print the ``ATEN_CPU_CAPABILITY`` values this CPU can run, one per line, lowest first.

PyTorch compiles its CPU kernels several times (scalar ``default``, ``avx2``, ``avx512`` on x86) and picks
the best one the CPU supports; the variable forces a lower one. Float32 results differ between them in
the last bits, so ``make test`` reruns the numerics tests under each value printed here.
Run with the variable unset (``env -u ATEN_CPU_CAPABILITY``), or it reports the forced level as the top.

``--others-than LEVEL`` leaves out LEVEL (the one the main test run used; empty: the native one), so that
``make test`` runs each level once.
"""

from __future__ import annotations

import argparse

import torch

# Lowest to highest, per architecture, as torch.backends.cpu.get_cpu_capability() names them.
LADDERS = (("DEFAULT", "AVX2", "AVX512"), ("DEFAULT", "SVE256"), ("DEFAULT", "ZVECTOR"), ("DEFAULT", "VSX"))


def capabilities() -> list[str]:
    native = torch.backends.cpu.get_cpu_capability()
    for ladder in LADDERS:
        if native in ladder:
            return [c.lower() for c in ladder[: ladder.index(native) + 1]]
    return ["default", native.lower()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--others-than", default=None, metavar="LEVEL",
                        help="leave out this level (empty string: the native one)")
    args = parser.parse_args()
    levels = capabilities()
    if args.others_than is not None:
        skip = args.others_than.lower() or levels[-1]
        levels = [c for c in levels if c != skip]
    print("\n".join(levels))
