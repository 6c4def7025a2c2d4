"""Offline text from Debian packages: larger than the embedded corpus, installed from a package registry.

`data.source=deb:<package>` reads one of the packages below once it is installed
(`bash scripts/install_debian_text.sh`, which runs `apt-get install dict-gcide`); nothing is downloaded
at training time. Source and license of each package: docs/DATA.md.

  - `dict-gcide`: GCIDE, the GNU Collaborative International Dictionary of English (Webster's 1913
    plus WordNet glosses), GPL-2+. ~40 MB of English definitions with quotations; one document per
    dictionary entry (~18M tokens with a 512-token byte-level BPE, ~5x the embedded corpus).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from harness.config import ConfigError

INSTALL_SCRIPT = "scripts/install_debian_text.sh"

# The dictd base64 alphabet of offsets and lengths in a `.index` file (big-endian digits).
_DICTD_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
# Fixed seed of the entry order, part of the source's definition (see embedded_documents in sources.py):
# the dictionary is alphabetical and the val split is the end of the stream, so unshuffled, small
# runs would train on A-words and validate on Z-words.
_ORDER_SEED = 20261129


@dataclass(frozen=True)
class DebianCorpus:
    package: str
    files: tuple[str, ...]  # what must exist once the package is installed
    documents: Callable[[], list[str]]


def _dictd_number(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + _DICTD_B64[char]
    return value


def dictd_entries(dict_dz: Path, index: Path) -> list[str]:
    """The entries of a dictd database, one string each, in index order, each byte range once
    (several headwords may point at one entry); the `00-database-*` metadata entries are left out."""
    raw = gzip.open(dict_dz).read()  # dictzip is gzip with random-access extras: gzip reads it whole
    seen: set[int] = set()
    entries = []
    for line in index.read_text(encoding="latin-1").splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[0].startswith("00-database"):
            continue
        offset, length = _dictd_number(parts[1]), _dictd_number(parts[2])
        if offset in seen:
            continue
        seen.add(offset)
        # GCIDE is Latin-1 (a handful of non-ASCII bytes); decoding it as such never fails.
        entries.append(raw[offset:offset + length].decode("latin-1").strip())
    return [e for e in entries if e]


def gcide_documents() -> list[str]:
    entries = dictd_entries(Path("/usr/share/dictd/gcide.dict.dz"), Path("/usr/share/dictd/gcide.index"))
    order = np.random.default_rng(_ORDER_SEED).permutation(len(entries))
    return [entries[i] for i in order]


CORPORA = {
    "dict-gcide": DebianCorpus("dict-gcide", ("/usr/share/dictd/gcide.dict.dz", "/usr/share/dictd/gcide.index"),
                               gcide_documents),
}


def corpus(package: str) -> DebianCorpus:
    """The corpus of `package`, installed; a ConfigError naming the install command otherwise."""
    if package not in CORPORA:
        raise ConfigError(f"data.source: deb:{package} is not a known Debian text package; "
                          f"known: {', '.join('deb:' + p for p in CORPORA)}")
    found = CORPORA[package]
    missing = [f for f in found.files if not Path(f).is_file()]
    if missing:
        raise ConfigError(f"data.source: deb:{package} needs the Debian package {package} ({missing[0]} is "
                          f"missing); install it with `bash {INSTALL_SCRIPT}` (apt-get install {package})")
    return found


def package_version(package: str) -> Optional[str]:
    """The installed version per dpkg (for the manifest), or None where dpkg is absent."""
    if shutil.which("dpkg-query") is None:
        return None
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def debian_documents(package: str) -> list[str]:
    return corpus(package).documents()
