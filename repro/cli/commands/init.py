"""``repro init``: make .repro/ in a git repository, or convert a DVC 3 project into one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repro.cli.ui import UI
from repro.config import Config
from repro.errors import ReproError, UsageError
from repro.project import GITIGNORE, REPRO_DIR, find_git_root


def cmd_init(args: argparse.Namespace, ui: UI) -> int:
    cwd = Path.cwd()
    git_root = find_git_root(cwd)
    if git_root is None:
        raise ReproError(f"{cwd} is not in a git repository; run 'git init' first")
    if git_root != cwd.resolve():
        raise ReproError(
            f"run 'repro init' at the top of the git repository ({git_root}), not in a subfolder"
        )
    repro_dir = cwd / REPRO_DIR
    if args.from_dvc:
        if args.force:
            raise UsageError("--from-dvc converts into a new project; it takes no -f")
        return _from_dvc(git_root, args.image, ui)
    if repro_dir.exists() and not args.force:
        raise ReproError(f"{repro_dir} already exists; use -f to re-initialise")
    _make_repro_dir(repro_dir)
    if args.image:
        Config(repro_dir).set("core.image", args.image)
    ui.info(f"Initialized repro project in {repro_dir}")
    ui.info("Next: git add .repro && git commit -m 'init repro'")
    return 0


def _make_repro_dir(repro_dir: Path) -> None:
    repro_dir.mkdir(exist_ok=True)
    (repro_dir / "cache").mkdir(exist_ok=True)
    (repro_dir / "tmp").mkdir(exist_ok=True)
    (repro_dir / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    config_path = repro_dir / "config"
    if not config_path.exists():
        config_path.write_text("", encoding="utf-8")


def _from_dvc(root: Path, image: str | None, ui: UI) -> int:
    from repro.fromdvc import convert

    def image_for() -> str:
        if image:
            return image
        if not sys.stdin.isatty():
            raise UsageError(
                "the stages need an image to run in; pass --image NAME (e.g. the image "
                "that has what 'dvc repro' used on this machine)"
            )
        answer = input("Image to run the stages in (a Docker image name): ").strip()
        if not answer:
            raise UsageError("no image given; pass --image NAME")
        return answer

    plan = convert.plan(root, image_for)
    _make_repro_dir(root / REPRO_DIR)
    written = convert.apply(root, plan)
    for warning in plan.warnings:
        ui.warn(warning)
    ui.info(f"Converted the DVC project in {root}: {', '.join(written)}")
    ui.info(f"Reused DVC's cache ({len(plan.memo_rows)} file hashes taken from DVC's memo).")
    ui.info("Next: git commit -m 'move to repro'; 'repro status' should find nothing changed.")
    ui.info(
        "DVC's files stay, so 'dvc' keeps working; when you are happy: "
        "git rm -r dvc.yaml dvc.lock '*.dvc' .dvc"
    )
    return 0
