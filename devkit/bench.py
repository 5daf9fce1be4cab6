"""``python -m devkit.bench anaplan|dynamics|e2e [options]``: run one benchmark (figures printed)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "anaplan": "devkit.bench_anaplan",
    "dynamics": "devkit.bench_dynamics",
    "e2e": "devkit.bench_e2e",
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in BENCHMARKS:
        print(f"usage: python -m devkit.bench {{{'|'.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(BENCHMARKS[args[0]])
    except ModuleNotFoundError as exc:
        print(f"benchmark {args[0]!r} is not available: {exc}", file=sys.stderr)
        return 2
    return int(module.main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
