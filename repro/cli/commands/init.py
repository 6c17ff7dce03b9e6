from __future__ import annotations

import argparse
from pathlib import Path

from repro.cli.ui import UI
from repro.config import Config
from repro.errors import ReproError
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
    if repro_dir.exists() and not args.force:
        raise ReproError(f"{repro_dir} already exists; use -f to re-initialise")
    repro_dir.mkdir(exist_ok=True)
    (repro_dir / "cache").mkdir(exist_ok=True)
    (repro_dir / "tmp").mkdir(exist_ok=True)
    (repro_dir / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    config_path = repro_dir / "config"
    if not config_path.exists():
        config_path.write_text("", encoding="utf-8")
    if args.image:
        Config(repro_dir).set("core.image", args.image)
    ui.info(f"Initialized repro project in {repro_dir}")
    ui.info("Next: git add .repro && git commit -m 'init repro'")
    return 0
