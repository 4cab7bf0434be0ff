"""The committed web SDK: its minified copy is built from the current
source, and minified and gzipped it stays under 8 KB."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "sdk" / "web"
LIMIT = 8 * 1024


def test_the_minified_sdk_is_built_from_the_committed_source() -> None:
    source = hashlib.sha256((SDK / "sessionpush.js").read_bytes()).hexdigest()
    first = (SDK / "sessionpush.min.js").read_text().splitlines()[0]
    assert first == f"// sessionpush.min.js, from sessionpush.js sha256 {source}", (
        "sessionpush.js changed since sessionpush.min.js was built: "
        "run sdk/web/minify.sh"
    )


def test_the_minified_and_gzipped_sdk_is_under_8_kb() -> None:
    size = len(gzip.compress((SDK / "sessionpush.min.js").read_bytes(), 9))
    print(f"\nweb SDK: {size} bytes minified and gzipped (limit {LIMIT})")
    assert size < LIMIT


def test_the_gateway_serves_the_files_of_sdk_web() -> None:
    served = Path(__file__).resolve().parents[2] / "sessionpush" / "gateway" / "web"
    for name in ("sessionpush.js", "sessionpush.min.js", "sw.js"):
        assert (served / name).read_bytes() == (SDK / name).read_bytes()
