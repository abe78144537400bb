"""Strip every privilege a file can carry in the image (runs as root in the image build).

Setuid and setgid bits, and file capabilities (the `security.capability` attribute
`setcap` writes), on every file of every file system below the root but the
kernel's (/proc, /sys, /dev): a Dockerfile's setuid copy or `setcap` stays inert
wherever it was put. Standard library only; prints what it stripped.
"""

import errno
import os
import stat
import sys

SKIP = ("/proc", "/sys", "/dev")
CAPABILITY = "security.capability"


def strip(path: str) -> list[str]:
    """What was stripped from the file at `path` (a link is never followed)."""
    done: list[str] = []
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        return done
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
        done.append("setuid/setgid")
    try:
        os.getxattr(path, CAPABILITY, follow_symlinks=False)
    except OSError as e:
        if e.errno not in (errno.ENODATA, errno.ENOTSUP):
            raise
    else:
        os.removexattr(path, CAPABILITY, follow_symlinks=False)
        done.append("capabilities")
    return done


def main(top: str) -> int:
    for folder, dirs, files in os.walk(top):
        if folder == top:
            dirs[:] = [d for d in dirs if os.path.join(folder, d) not in SKIP]
        for name in files:
            path = os.path.join(folder, name)
            for what in strip(path):
                print(f"stripped {what}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/"))
