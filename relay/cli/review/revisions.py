"""Files as they are at a git revision (`origin/main:routes.yaml`), for reviewing a change against its base.

A review compares what the repository holds at the pull request's base with
the working tree. relay reads the base with git itself (ls-tree and cat-file)
and writes the few files it needs (routes.yaml, the templates directory, the
rule files) into a temporary directory, so every loader reads a plain file and
errors name `REV:PATH`, never the temporary copy.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from relay.errors import ConfigError

_FULL_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
GIT_TIMEOUT = 60.0  # seconds for one git command: a local repository answers in milliseconds


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=GIT_TIMEOUT, check=False)
    except FileNotFoundError:
        raise ConfigError("git is not installed: a revision (REV:PATH, --base) needs it") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"git {args[0]} took longer than {GIT_TIMEOUT:.0f}s") from None
    if check and done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(f"git {args[0]} failed: {message[-1] if message else done.returncode}")
    return done


def toplevel(cwd: Path) -> Path | None:
    """The root of the git work tree around `cwd`, or None outside one (or without git)."""
    try:
        done = _git(cwd, "rev-parse", "--show-toplevel", check=False)
    except ConfigError:
        return None
    return Path(done.stdout.decode().strip()) if done.returncode == 0 else None


def split_spec(spec: str, cwd: Path) -> tuple[str | None, str]:
    """`REV:PATH` into its parts; an existing file, or text without a colon, is a path in the working tree."""
    rev, sep, path = spec.partition(":")
    if not sep or not rev or not path or (cwd / spec).exists():
        return None, spec
    return rev, path


@dataclass(frozen=True)
class Revision:
    """The repository at one commit, with the repository-relative paths a review reads from it copied out."""

    rev: str
    root: Path  # the temporary copy: root / PATH is PATH at rev, when it exists there

    @property
    def shown(self) -> str:
        """The revision as people read it: a full commit id (CI's merge-base variables) cut to 12 characters."""
        return self.rev[:12] if _FULL_ID.fullmatch(self.rev) else self.rev

    def label(self, relpath: str) -> str:
        return f"{self.shown}:{relpath}"

    def relabel(self, exc: ConfigError) -> ConfigError:
        """The same error with the temporary copy's paths named as `REV:PATH`."""
        prefix = f"{self.root}{os.sep}"
        file = exc.file.replace(prefix, f"{self.shown}:") if exc.file else exc.file
        return ConfigError(exc.reason.replace(prefix, f"{self.shown}:"), file=file, line=exc.line)


def checkout(repo: Path, rev: str, paths: list[str], into: Path) -> Revision:
    """Copy the regular files at `rev` under each repository-relative path (a file or a folder) into `into`."""
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False).returncode != 0:
        raise ConfigError(f"unknown revision {rev!r} (fetch it first: a shallow clone may lack the base; "
                          "actions/checkout needs fetch-depth: 0)")
    wanted = sorted({p.strip("/") for p in paths if p.strip("/")})
    if wanted:
        listing = _git(repo, "ls-tree", "-r", "-z", "--full-tree", rev, "--", *wanted).stdout
        for entry in filter(None, listing.split(b"\0")):
            meta, _, name = entry.partition(b"\t")
            mode, kind, sha = meta.decode().split()
            if kind != "blob" or mode not in ("100644", "100755"):
                continue  # symlinks and submodules: nothing relay would read
            target = into / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_git(repo, "cat-file", "blob", sha).stdout)
    return Revision(rev, into)


_LINK = "a symbolic link: a review reads only regular files in the repository, never what a link points to"


def refuse_links(repo: Path | None, paths: list[Path]) -> None:
    """Refuse a working-tree file a review would read that is a symbolic link or sits under one in the repository:
    a pull request could otherwise point a template or rule file at `/proc/self/environ` or a CI credential and
    have its text rendered into the posted comment. Folders are checked file by file. A path outside the repository
    is read as given: only the command line names one (the CI job's choice), never the pull request's files."""
    for path in paths:
        absolute = Path(os.path.abspath(path))
        inside = repo is not None and absolute.is_relative_to(repo.absolute())
        if inside and repo is not None:
            current = repo.absolute()
            for part in absolute.relative_to(current).parts:
                current = current / part
                if current.is_symlink():
                    raise ConfigError(_LINK, file=str(current))
        elif absolute.is_symlink():
            raise ConfigError(_LINK, file=str(path))
        if absolute.is_dir():
            for folder, dirs, files in os.walk(absolute):  # does not follow links: each is refused here
                for name in [*dirs, *files]:
                    if (Path(folder) / name).is_symlink():
                        raise ConfigError(_LINK, file=str(Path(folder) / name))


def relative_to_repo(repo: Path, path: Path) -> str | None:
    """`path` (relative to the current directory or absolute) as git names it in the repository; None outside."""
    try:
        return Path(os.path.relpath(path.resolve(), repo.resolve())).as_posix() if _inside(repo, path) else None
    except ValueError:
        return None


def _inside(repo: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(repo.resolve())


def temporary_root() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="relay-rev-")
