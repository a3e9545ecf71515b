"""`python -m demo` (`make demo`): the embedded service, used over HTTP with the example subjects."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from svdiff_client import SvdiffError

from demo.run import DemoOptions, run_demo
from demo.server import ROOT, ServerFailed


def parser() -> argparse.ArgumentParser:
    defaults = DemoOptions(examples=Path(), out=Path(), data_dir=Path())
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    p.add_argument("--examples", type=Path, default=ROOT / "examples", help="one folder of photos per subject")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="where the generated images go")
    p.add_argument("--data-dir", type=Path, default=Path("var/demo"),
                   help="the service's data folder (SQLite, blobs, caches); wiped at each run")
    p.add_argument("--subjects", type=int, default=3, help="how many example subjects to use")
    p.add_argument("--steps", type=int, default=defaults.steps, help="training steps per subject")
    p.add_argument("--class-images", type=int, default=defaults.class_images,
                   help="prior-preservation images per class word (SVDIFF_CLASS_IMAGES)")
    p.add_argument("--class-image-steps", type=int, default=defaults.class_image_steps,
                   help="sampling steps per class image (SVDIFF_CLASS_IMAGE_STEPS)")
    p.add_argument("--prompts", type=int, default=defaults.prompts_per_subject, help="new scenes per subject")
    p.add_argument("--images", type=int, default=defaults.images_per_prompt, help="images per scene (1-4)")
    p.add_argument("--sample-steps", type=int, default=defaults.sample_steps, help="sampling steps per image")
    p.add_argument("--no-pair", action="store_true", help="skip the image of two subjects together")
    p.add_argument("--timeout", type=float, default=defaults.timeout, help="seconds to wait for each set of jobs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from basemodel import DEFAULT_GUIDANCE

    options = DemoOptions(
        examples=args.examples, out=args.out, data_dir=args.data_dir.resolve(), steps=args.steps,
        class_images=args.class_images, class_image_steps=args.class_image_steps, prompts_per_subject=args.prompts,
        images_per_prompt=args.images, sample_steps=args.sample_steps, guidance=DEFAULT_GUIDANCE,
        pair=not args.no_pair, timeout=args.timeout, subjects=args.subjects,
    )  # fmt: skip
    started = time.monotonic()
    try:
        result = run_demo(options)
    except (SvdiffError, ServerFailed, RuntimeError, TimeoutError, FileNotFoundError, FileExistsError) as exc:
        print(f"demo: failed: {exc}", file=sys.stderr)
        return 1
    print(f"demo: finished in {time.monotonic() - started:.0f} s")
    print(result.fidelity.line())
    print(f"demo: {len(result.files)} images in {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
