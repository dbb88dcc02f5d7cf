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


# -- a real S3 API on loopback ------------------------------------------------------------------
# moto in server mode (``moto_server``, a separate process on 127.0.0.1, as the S3 tests' stand-in
# for a bucket): s3fs talks HTTP to it exactly as to AWS. Credentials and the endpoint reach the
# client through the environment, as a user's would (the tool has no options for them).

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """``http://127.0.0.1:PORT`` of a ``moto_server`` started for the session, stopped after it."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if exe is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = _free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not start on {url}")
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    """The environment of a user whose S3 is the loopback server (for this process and the
    subprocesses a test starts): credentials and ``AWS_ENDPOINT_URL``."""
    for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()  # a client made under another environment
    return s3_endpoint


@pytest.fixture
def s3_bucket(s3_env, request):
    """A new, empty bucket for this test: its name (``s3://NAME`` is its root)."""
    import re

    import s3fs

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + f"-{_free_port()}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(name)
    return name
