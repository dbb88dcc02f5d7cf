"""The Hugging Face Hub by name: ``hf://datasets/OWNER/NAME[@REVISION][/PATH-GLOB]`` as shards.

Pretraining corpora ship on the Hub as sharded ``jsonl.gz`` / ``parquet`` files (RedPajama,
Dolma, FineWeb, C4). Listing those files and scanning each as a shard keeps what local files
have: resume, Slurm slices and workers per file, the same bad-record accounting.

Why it is built this way:

- **Revision pinned once.** ``@REVISION`` (branch, tag, ``refs/pr/N`` or commit; ``main`` when
  absent) is resolved to its commit sha before anything is listed, through
  ``huggingface_hub.HfApi.resolve_revision`` (which also records it in the cache's ``refs/`` so
  an offline rerun resolves it the same way). The shards' root is
  ``hf://datasets/OWNER/NAME@<sha>``: a commit never changes, so the files under it are the same
  bytes on every machine and rerun, and their output keys (made from root and path in the repo,
  never from where a file happens to be cached) are the same everywhere.
- **Online or offline, one listing.** The files of that commit come from the tree listing
  ``snapshot_download`` cached for it (``get_cached_repo_tree``: a commit's tree never changes, so
  no request), else online from the Hub API (``list_repo_tree``), else offline from the cached
  snapshot folder. A file already in the local Hugging Face cache is read from there, any other
  is streamed through fsspec (``huggingface_hub.HfFileSystem``, ``hf://...@sha``) without
  downloading it whole. With ``HF_HUB_OFFLINE=1`` only the cache is used, and a data file the
  listing names but the cache lacks is an error, not a silently smaller corpus.
- **Data files only.** Files whose name llama-audit reads (:func:`~llama_audit.corpus.discover.detect_format`);
  hidden files and folders (``.gitattributes``), names that start with ``_`` and the metadata JSON
  that ``datasets`` writes (``dataset_info.json``, ...) are skipped, as in local discovery.

Tokens are whatever ``huggingface_hub`` finds itself (``HF_TOKEN``, ``hf auth login``); none is
passed, printed or recorded here. ``huggingface_hub`` is the extra ``hf``, imported when an
``hf://`` argument is listed.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..types import ConfigError
from .discover import _HF_DICT, _HF_INFO, _HF_STATE, _ignored_name, detect_format
from .streams import error_text

#: how an argument names a Hub location (the fsspec protocol of huggingface_hub.HfFileSystem)
HF_PROTOCOL = "hf://"
#: the only repository type holding corpora; models and spaces are refused by name
_DATASET_TYPE = "dataset"
#: metadata files that ``datasets`` keeps next to the data (JSON, but no JSON lines)
_METADATA_NAMES = frozenset({_HF_STATE, _HF_INFO, _HF_DICT, "dataset_infos.json"})
#: the mtime of every Hub file: the commit sha in the root pins its bytes (no clock involved)
HUB_MTIME_NS = 0
#: the huggingface_hub release whose API this module uses (the ``hf`` extra asks for it), and that API
HUB_MIN_VERSION = "2.4"
_HUB_API = ("parse_hf_uri", "get_cached_repo_tree", "try_to_load_from_cache", "HfApi", "RepoFile")
_GLOB_MAGIC = re.compile(r"[*?\[]")
_SHOWN = 3  # file names shown in an error

#: one (open_path, rel, size, mtime_ns) per data file, see :func:`list_hub_files`
HubFile = tuple[str, str, int, int]


def _hub() -> Any:
    """The ``huggingface_hub`` module, or a one-line ConfigError naming the extra."""
    try:
        import huggingface_hub
    except ImportError:
        raise ConfigError("hf:// inputs need huggingface_hub: pip install 'llama-audit[hf]'") from None
    if not all(hasattr(huggingface_hub, name) for name in _HUB_API):
        raise ConfigError(f"hf:// inputs need huggingface_hub {HUB_MIN_VERSION} or later (this is "
                          f"{getattr(huggingface_hub, '__version__', 'older')}): pip install -U 'llama-audit[hf]'")
    return huggingface_hub


def _parse(url: str, hub: Any) -> tuple[str, str | None, str]:
    """(repo id, revision or None, path or glob in the repo) of ``hf://datasets/OWNER/NAME...``."""
    try:
        uri = hub.parse_hf_uri(url)
    except ValueError as e:  # HfUriError, a ValueError
        raise ConfigError(f"{url}: not a Hub dataset URL ({error_text(e)}); "
                          "write hf://datasets/OWNER/NAME[@REVISION][/PATH-GLOB]") from None
    if uri.type != _DATASET_TYPE or not url.startswith(HF_PROTOCOL + "datasets/"):
        raise ConfigError(f"{url}: only dataset repositories hold corpora; "
                          "write hf://datasets/OWNER/NAME[@REVISION][/PATH-GLOB]")
    return uri.id, uri.revision, uri.path_in_repo.strip("/")


def _selected(rel: str, path: str) -> bool:
    """Whether the repo file ``rel`` is named by ``path``: a glob over whole repo paths
    (``data/**/*.parquet``), else that file or everything in that folder (empty: everything)."""
    if not path:
        return True
    if _GLOB_MAGIC.search(path):
        from fsspec.utils import glob_translate  # fsspec comes with the hf extra

        return re.fullmatch(glob_translate(path), rel) is not None
    return rel == path or rel.startswith(path + "/")


def _data_file(rel: str) -> bool:
    """A file llama-audit reads as a shard: a known ending, not hidden, no ``datasets`` metadata."""
    parts = rel.split("/")
    if any(p.startswith(".") for p in parts[:-1]) or _ignored_name(parts[-1]):
        return False
    return parts[-1] not in _METADATA_NAMES and detect_format(parts[-1]) is not None


def _resolve(hub: Any, url: str, repo_id: str, revision: str | None, offline: bool) -> str:
    """The commit sha of ``revision`` (``main`` when None): from the Hub, or offline from the cache."""
    errors = hub.errors
    try:
        return str(hub.HfApi().resolve_revision(repo_id, repo_type=_DATASET_TYPE, revision=revision,
                                                local_files_only=offline).resolved)
    except errors.RevisionResolutionError:
        if offline:
            raise _not_cached(url) from None
        raise ConfigError(f"{url}: cannot reach the Hub ({hub.constants.ENDPOINT}) and the revision is not in "
                          "the local Hugging Face cache; check the network, or run once online") from None
    except errors.HfHubHTTPError as e:
        raise _refused(hub, e, url, repo_id, revision) from None


def _refused(hub: Any, e: Exception, url: str, repo_id: str, revision: str | None) -> ConfigError:
    """The one line for an answer of the Hub that refuses a dataset or revision."""
    errors = hub.errors
    if isinstance(e, errors.RevisionNotFoundError):
        return ConfigError(f"{url}: no revision {revision or 'main'!r} in dataset {repo_id}")
    if isinstance(e, errors.GatedRepoError):
        return ConfigError(f"{url}: dataset {repo_id} is gated: accept its terms on the Hub and set "
                           "HF_TOKEN (or run hf auth login)")
    if isinstance(e, errors.RepositoryNotFoundError):
        return ConfigError(f"{url}: no dataset {repo_id} on {hub.constants.ENDPOINT} (or it is private: "
                           "set HF_TOKEN, or run hf auth login)")
    return ConfigError(f"{url}: the Hub refused the request ({error_text(e)})")


def _not_cached(url: str) -> ConfigError:
    return ConfigError(f"{url}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                       "run once online or unset it")


def _listed_online(hub: Any, url: str, repo_id: str, sha: str) -> list[tuple[str, int]]:
    """(path in repo, size) of every file of the repository at commit ``sha``, from the Hub."""
    try:
        tree = hub.HfApi().list_repo_tree(repo_id, repo_type=_DATASET_TYPE, revision=sha, recursive=True)
        return [(f.path, int(f.size)) for f in tree if isinstance(f, hub.RepoFile)]
    except hub.errors.HfHubHTTPError as e:  # a commit sha is not checked before it is listed
        raise _refused(hub, e, url, repo_id, sha) from None
    except Exception as e:  # noqa: BLE001 - the transport's errors (connection, timeout) after its retries
        raise ConfigError(f"{url}: cannot list the dataset's files on {hub.constants.ENDPOINT} ({error_text(e)}); "
                          "check the network, or set HF_HUB_OFFLINE=1 to use the local Hugging Face cache") from None


def _cached_tree(hub: Any, repo_id: str, sha: str) -> list[tuple[str, int]] | None:
    """(path in repo, size) of every file at commit ``sha`` from the tree listing that
    ``snapshot_download`` caches (a commit's tree never changes), or None when none is cached."""
    try:
        return [(f.path, int(f.size)) for f in hub.get_cached_repo_tree(repo_id, repo_type=_DATASET_TYPE,
                                                                         revision=sha)]
    except hub.errors.CachedRepoTreeNotFoundError:
        return None


def _listed_offline(hub: Any, url: str, repo_id: str, sha: str) -> list[tuple[str, int]]:
    """(path in repo, size) of the files of the cached snapshot folder of commit ``sha``, where no
    tree listing is cached (files fetched one by one with ``hf_hub_download``)."""
    snapshot = _snapshot_folder(hub, repo_id, sha)
    if not os.path.isdir(snapshot):
        raise _not_cached(url)
    found: list[tuple[str, int]] = []
    for dirpath, dirnames, filenames in os.walk(snapshot):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = os.path.join(dirpath, name)
            found.append((os.path.relpath(path, snapshot).replace(os.sep, "/"), os.path.getsize(path)))
    return found


def _snapshot_folder(hub: Any, repo_id: str, sha: str) -> str:
    from huggingface_hub.file_download import repo_folder_name

    return os.path.join(hub.constants.HF_HUB_CACHE, repo_folder_name(repo_id=repo_id, repo_type=_DATASET_TYPE),
                        "snapshots", sha)


def _cached_path(hub: Any, repo_id: str, rel: str, sha: str) -> str | None:
    """The file in the local Hugging Face cache, or None when it is not there."""
    path = hub.try_to_load_from_cache(repo_id, rel, revision=sha, repo_type=_DATASET_TYPE)
    return path if isinstance(path, str) and os.path.isfile(path) else None


def hub_root(repo_id: str, sha: str) -> str:
    """The shards' root of a dataset at a commit: ``hf://datasets/OWNER/NAME@<sha>``."""
    return f"{HF_PROTOCOL}datasets/{repo_id}@{sha}"


def list_hub_files(url: str) -> tuple[str, list[HubFile]]:
    """The data files of ``hf://datasets/OWNER/NAME[@REVISION][/PATH-GLOB]``:
    ``(root, [(open_path, rel, size, mtime_ns), ...])`` sorted by ``rel``.

    ``root`` is ``hf://datasets/OWNER/NAME@<commit sha>`` (the revision resolved once), ``rel``
    the file's path in the repository, ``open_path`` the file in the local Hugging Face cache when
    it is there, else ``root + "/" + rel`` for fsspec to stream, and ``mtime_ns`` is
    :data:`HUB_MTIME_NS` (the sha pins the bytes). ``HF_HUB_OFFLINE`` set: the cache only.
    Every problem is a one-line ConfigError (no dataset, no revision, not cached offline, no data
    file matches)."""
    hub = _hub()
    repo_id, revision, path = _parse(url, hub)
    offline = bool(hub.constants.is_offline_mode())
    sha = _resolve(hub, url, repo_id, revision, offline)
    root = hub_root(repo_id, sha)
    listed = _cached_tree(hub, repo_id, sha)  # no request where the cache knows the commit's files
    if listed is None:
        listed = (_listed_offline if offline else _listed_online)(hub, url, repo_id, sha)
    chosen = sorted((rel, size) for rel, size in listed if _selected(rel, path))
    data = [(rel, size) for rel, size in chosen if _data_file(rel)]
    if not data:
        where = f"{root}/{path}" if path else root
        others = [rel for rel, _ in chosen if not rel.split("/")[-1].startswith(".")]
        seen = (f" ({len(others)} other file(s), e.g. {', '.join(map(repr, others[:_SHOWN]))})" if others
                else " (no file matches)" if path else "")
        raise ConfigError(f"{url}: no data files llama-audit reads in {where}{seen}")
    files: list[HubFile] = []
    missing: list[str] = []
    for rel, size in data:
        cached = _cached_path(hub, repo_id, rel, sha)
        if cached is None and offline:
            missing.append(rel)
        files.append((cached or f"{root}/{rel}", rel, size, HUB_MTIME_NS))
    if missing:
        raise ConfigError(f"{url}: {len(missing)} of its {len(files)} data file(s) are not in the local Hugging "
                          f"Face cache (e.g. {missing[0]!r}) and HF_HUB_OFFLINE is set; run once online "
                          "(hf download --repo-type dataset ...) or unset it")
    return root, files

