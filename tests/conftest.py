import gzip
import json
from pathlib import Path

import pytest


def write_jsonl(path: Path, records, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    if gz:
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def make_jsonl(tmp_path):
    def make(name, records, gz=False):
        return write_jsonl(tmp_path / "corpus" / name, records, gz=gz)
    return make


EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "web_samples"
