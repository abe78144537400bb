"""What the run stage hands the sealed scorer: copies of its regular files, nothing else.

The run stage's `/results` is untrusted: the candidate may have left a symbolic
link to where the secret will be mounted (`pred.txt -> /secret/labels.txt`), a
FIFO that hangs an ordinary scorer, a device, or a sparse file of terabytes.
The host copies only regular files, opened without following links and without
blocking, up to a total size; anything else is refused by name, and the attempt
is a crash that says what was refused (the scorer never runs on it).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20


@dataclass
class Handover:
    copied: int = 0
    refused: list[str] = field(default_factory=list)

    def reason(self) -> str | None:
        if not self.refused:
            return None
        shown = "; ".join(self.refused[:3]) + (
            f" (+{len(self.refused) - 3} more)" if len(self.refused) > 3 else ""
        )
        return f"refused for the scorer: {shown} — the run stage may leave only regular files in /results"


def hand_over(src: Path, dst: Path, cap: int) -> Handover:
    """Copy the regular files under `src` into `dst` (made here), at most `cap` bytes in all."""
    out = Handover()
    dst.mkdir(parents=True, exist_ok=True)
    for dirpath, dirs, files in os.walk(src, followlinks=False):
        rel_dir = Path(dirpath).relative_to(src)
        for name in sorted(dirs):
            if (Path(dirpath) / name).is_symlink():
                out.refused.append(f"{rel_dir / name}: a symbolic link")
                dirs.remove(name)
            else:
                (dst / rel_dir / name).mkdir(exist_ok=True)
        for name in sorted(files):
            rel = rel_dir / name
            why = _copy(Path(dirpath) / name, dst / rel, cap - out.copied, out)
            if why:
                out.refused.append(f"{rel}: {why}")
    return out


def _copy(path: Path, to: Path, room: int, out: Handover) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        return "a symbolic link" if os.path.islink(path) else f"unreadable ({e.strerror})"
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file (a FIFO, a socket or a device)"
        if st.st_size > room:
            return f"{st.st_size} bytes, over what is left of the {out.copied + room}-byte handover cap"
        here = 0
        with open(to, "wb") as g:
            while chunk := f.read(CHUNK):
                here += len(chunk)
                if here > room:
                    return "grew past the handover cap while it was copied"
                g.write(chunk)
        out.copied += here
    os.chmod(to, 0o444)
    return None
