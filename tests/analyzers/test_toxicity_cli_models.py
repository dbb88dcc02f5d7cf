"""``llama-audit models fetch|list`` (``models_app``, mounted as ``models``); no network is used."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from llama_audit.analyzers.toxicity import model as tm
from llama_audit.cli_models import models_app

runner = CliRunner()


def test_list_shows_missing_models(tmp_path, monkeypatch):
    monkeypatch.setattr(tm, "hub_cache_dir", lambda: str(tmp_path))
    res = runner.invoke(models_app, ["list"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "tomh/toxigen_hatebert" in res.output and "missing" in res.output
    assert "bert-base-uncased" in res.output


def test_list_shows_a_local_directory(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"0" * 10)
    res = runner.invoke(models_app, ["list", "--toxicity-model", str(d)], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert "local" in res.output


def test_fetch_offline_fails_fast_with_one_line():
    pytest.importorskip("huggingface_hub")
    res = runner.invoke(models_app, ["fetch"], env={"HF_HUB_OFFLINE": "1"})
    assert res.exit_code == 2  # a setup error; 1 means "some shards failed"
    err = res.stderr
    assert res.stdout == ""
    assert "HF_HUB_OFFLINE" in err and "--toxicity-model PATH" in err
    assert len(err.strip().splitlines()) == 1


def test_fetch_download_error_is_one_line(monkeypatch):
    pytest.importorskip("huggingface_hub")
    import llama_audit.cli_models as cm

    def no_network(*a, **k):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(cm, "_download", no_network)
    monkeypatch.setattr(cm, "_offline", lambda: False)
    res = runner.invoke(models_app, ["fetch"])
    assert res.exit_code == 2
    err = res.stderr
    assert res.stdout == ""
    assert "could not download toxicity model 'tomh/toxigen_hatebert'" in err
    assert len(err.strip().splitlines()) == 1


def hub_error(kind: str, status: int):
    """A real huggingface_hub error as the hub raises it: a multi-line text around the reason."""
    httpx2 = pytest.importorskip("httpx2")  # the HTTP client of this huggingface_hub
    from huggingface_hub import errors

    url = "https://huggingface.co/api/models/someone/nothing/revision/main"
    response = httpx2.Response(status, request=httpx2.Request("GET", url))
    text = (f"{status} Client Error. (Request ID: Root=1-abc)\n\nRepository Not Found for url: {url}.\n"
            "Please make sure you specified the correct `repo_id` and `repo_type`.\n"
            "If you are trying to access a private or gated repo, make sure you are authenticated.")
    return getattr(errors, kind)(text, response=response)


@pytest.mark.parametrize("make_error,reason", [
    (lambda: hub_error("RepositoryNotFoundError", 404), "no such repository on the hub"),
    (lambda: hub_error("GatedRepoError", 403), "the repository is gated"),
    (lambda: hub_error("HfHubHTTPError", 503), "the hub answered HTTP 503"),
    (lambda: OSError(28, "No space left on device", "/cache/hub/blobs/x.incomplete"),
     "no space left on the device holding /cache/hub/blobs/x.incomplete"),
], ids=["not-found", "gated", "http-503", "disk-full"])
def test_fetch_hub_errors_are_one_line_with_the_reason_and_exit_2(monkeypatch, make_error, reason):
    pytest.importorskip("huggingface_hub")
    import llama_audit.cli_models as cm

    def failing(*a, **k):
        raise make_error()

    monkeypatch.setattr(cm, "_download", failing)
    monkeypatch.setattr(cm, "_offline", lambda: False)
    res = runner.invoke(models_app, ["fetch", "--toxicity-model", "someone/nothing"])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert reason in res.stderr and "someone/nothing" in res.stderr and "Request ID" not in res.stderr


def test_list_prints_markup_in_a_path_literally(tmp_path):
    d = tmp_path / "m[/]" / "[bold]x"
    d.mkdir(parents=True)
    res = runner.invoke(models_app, ["list", "--toxicity-model", str(d)], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert "[bold]x" in res.output


def test_fetch_then_found_in_cache(tmp_path, monkeypatch):
    """fetch downloads (simulated here) into the hub cache; the files are then found offline."""
    pytest.importorskip("huggingface_hub")
    import llama_audit.cli_models as cm

    calls = []

    def fake_download(repo, revision, patterns, timeout):
        calls.append((repo, tuple(patterns)))
        root = tmp_path / ("models--" + repo.replace("/", "--"))
        snap = root / "snapshots" / ("c" * 40)
        snap.mkdir(parents=True, exist_ok=True)
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / "main").write_text("c" * 40)
        if "*.safetensors" in patterns:
            (snap / "config.json").write_text("{}")  # this repository has no safetensors: .bin next
        elif "pytorch_model.bin" in patterns:
            (snap / "pytorch_model.bin").write_bytes(b"weights")
        else:
            (snap / "vocab.txt").write_text("[PAD]\n")
        return snap

    monkeypatch.setattr(cm, "_download", fake_download)
    monkeypatch.setattr(cm, "_offline", lambda: False)
    monkeypatch.setattr(tm, "hub_cache_dir", lambda: str(tmp_path))
    res = runner.invoke(models_app, ["fetch"])
    assert res.exit_code == 0, res.output
    assert [c[0] for c in calls] == ["tomh/toxigen_hatebert", "tomh/toxigen_hatebert", "bert-base-uncased"]
    assert "toxicity model: tomh/toxigen_hatebert @ " + "c" * 40 in res.output
    assert tm.locate("tomh/toxigen_hatebert", None, kind="model", option="--toxicity-model").revision == "c" * 40


def test_mounted_as_models_in_the_cli(tmp_path, monkeypatch):
    from llama_audit.cli import command

    monkeypatch.setattr(tm, "hub_cache_dir", lambda: str(tmp_path))
    res = runner.invoke(command(), ["models", "list"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "tomh/toxigen_hatebert" in res.stdout and "missing" in res.stdout
