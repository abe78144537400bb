"""Install wheels into the image's Python without pip or a network (runs in the image build).

A wheel is a zip laid out as it installs: its files go to the site directory, its
`*.data/purelib` and `*.data/platlib` parts there too. Scripts and headers are not
installed (a sandbox runs `python -m ...`). Standard library only.
"""

import sys
import sysconfig
import zipfile
from pathlib import Path


def install(wheel: Path, site: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            name = info.filename
            parts = name.split("/")
            if ".." in parts or name.startswith("/"):
                raise SystemExit(f"{wheel.name}: unsafe path {name!r}")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                name = "/".join(parts[2:])
            if info.is_dir():
                continue
            target = site / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))


if __name__ == "__main__":
    site = Path(sysconfig.get_paths()["purelib"])  # Debian: /usr/local/lib/python3.X/dist-packages
    site.mkdir(parents=True, exist_ok=True)
    wheels = sorted(Path(sys.argv[1]).glob("*.whl"))
    for wheel in wheels:
        install(wheel, site)
        print(f"installed {wheel.name} into {site}")
