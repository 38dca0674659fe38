"""``python -m lavie.synthetic WORKDIR [--images N]``: the tiny SD folder and an image manifest."""

from __future__ import annotations

import argparse

from lavie.synthetic import prepare_training_inputs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a tiny random SD folder and a generated image manifest.")
    parser.add_argument("workdir")
    parser.add_argument("--images", type=int, default=12)
    args = parser.parse_args(argv)
    for name, path in prepare_training_inputs(args.workdir, args.images).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
