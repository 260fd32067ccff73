"""Weights resolution, in one place: local override -> EVALSUITE_WEIGHTS_DIR -> the card's sources, where a hub
file comes through huggingface_hub's cache (never a hand-written downloader). Never random weights.

A hub file (a card's ``hf_file``, or the file behind an open_clip tag) is looked up in the Hugging Face cache
first, with no request. Only when it is absent is the hub asked — once, with a short timeout and no retries
(``hub_unreachable``); an unreachable hub, or HF_HUB_OFFLINE, gives at once one error naming the file and the
three ways to provide it, instead of huggingface_hub's minute of retries.

A card's ``hf_file`` and an ``hf:ORG/NAME`` repo without a commit are first resolved to one (``hub_commit``:
the hub's answer when it is reachable, one metadata request; else the cache's ``refs/``), which the model
fingerprint names and at which the files are then read, so a moved branch never serves old numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from ..errors import ModelLoadError
from ..resources import PACKAGE_DIR
from .card import COMMIT_HASH, ModelCard, WeightsSource

log = logging.getLogger(__name__)

LOCAL_KINDS = ("file", "local_dir", "package_dir")


@dataclass(frozen=True)
class ResolvedWeights:
    source: WeightsSource
    path: Optional[Path]  # None for sources another library fetches itself (open_clip tags)

    def describe(self) -> str:
        where = f" -> {self.path}" if self.path else ""
        extra = f"/{self.source.filename}" if self.source.filename else ""
        return f"{self.source.kind}:{self.source.ref}{extra}{where}"


def _local_path(source: WeightsSource) -> Path:
    if source.kind == "package_dir":
        return PACKAGE_DIR / source.ref
    return Path(source.ref).expanduser()


def weights_dir_candidate(source: WeightsSource, architecture: Optional[str] = None) -> Optional[Path]:
    """The copy of a hub file in ``$EVALSUITE_WEIGHTS_DIR``, if that variable is set: ``<dir>/<filename>`` for an
    ``hf_file``; ``<dir>/<hub repo>/<filename>`` for an open_clip tag (open_clip's file names are the same for
    every model, so the repo keeps them apart). For a tag, the first of open_clip's file names that is there."""
    folder = os.environ.get("EVALSUITE_WEIGHTS_DIR")
    if not folder:
        return None
    if source.kind == "hf_file" and source.filename:
        return Path(folder).expanduser() / source.filename
    if source.kind == "open_clip_tag" and architecture:
        hub = open_clip_tag_files(architecture, source.ref)
        if hub is not None:
            repo, names = hub
            paths = [Path(folder).expanduser() / repo / name for name in names]
            return next((p for p in paths if p.is_file()), paths[0])
    return None


def pick_source(card: ModelCard, kinds: tuple[str, ...]) -> WeightsSource:
    """The first source of the card that the adapter can use; local files win over hub downloads."""
    usable = [s for s in card.weights if s.kind in kinds]
    if not usable:
        raise ModelLoadError(
            f"model card {card.name!r} lists no weights this adapter ({card.adapter}) can load (it takes"
            f" {', '.join(kinds)}); pass --weights FILE"
        )
    for source in usable:
        candidate = weights_dir_candidate(source, card.architecture)
        if candidate is not None and candidate.is_file():
            return WeightsSource("file", str(candidate), notes=f"EVALSUITE_WEIGHTS_DIR copy of {source.ref}")
    return usable[0]


def resolve(source: WeightsSource, download: bool = True) -> ResolvedWeights:
    """A local path for ``source``; hub files are fetched into (or found in) the Hugging Face cache."""
    if source.kind in LOCAL_KINDS:
        path = _local_path(source)
        if not path.exists():
            raise ModelLoadError(f"weights {path} not found ({source.kind} source); check the path")
        return ResolvedWeights(source, path)
    if source.kind == "hf_file":
        return ResolvedWeights(source, _hf_file(source, download))
    return ResolvedWeights(source, None)


def _hf_file(source: WeightsSource, download: bool) -> Path:
    # at the commit the fingerprint names, never at wherever the branch points by now
    return hub_file(source.ref, [source.filename], hf_file_commit(source), download, local_name=source.filename)


def hf_file_commit(source: WeightsSource) -> str:
    """The commit an ``hf_file`` source is read at (``hub_commit``); its missing-weights error when unknown."""
    return hub_commit(source.ref, source.revision, [source.filename],
                      lambda why: missing_weights_error(source.ref, [source.filename], why, source.filename))


# ---------------------------------------------------------------------------------------------------------------
# The Hugging Face hub: cache first, then one quick question to the hub


HUB_PROBE_TIMEOUT_S = 5.0  # one request, no retries; an unreachable hub is known within this
PROBE_TTL_S = 60.0  # a run resolves weights more than once (identity, load): the hub is asked once
_probes: dict[str, tuple[float, Optional[str]]] = {}


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), as huggingface_hub read it at import or as set since."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or flag.strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_unreachable() -> Optional[str]:
    """None when the hub (``HF_ENDPOINT``) answers a single HEAD request within HUB_PROBE_TIMEOUT_S (any HTTP
    status counts as an answer); else why not: offline mode, no DNS, connection refused, timeout."""
    from huggingface_hub import constants

    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    endpoint = constants.ENDPOINT
    probe = _probes.get(endpoint)
    if probe is not None and time.monotonic() - probe[0] < PROBE_TTL_S:
        return probe[1]
    try:
        from huggingface_hub.utils import get_session

        get_session().head(endpoint, timeout=HUB_PROBE_TIMEOUT_S)
        reason = None
    except Exception as exc:  # noqa: BLE001 - DNS, refused, timeout, proxy, TLS: all mean "cannot download now"
        reason = f"the hub ({endpoint}) is unreachable ({type(exc).__name__}: {_first_line(exc)})"
    _probes[endpoint] = (time.monotonic(), reason)
    return reason


# A revision that can move (a branch such as main, a tag): resolved to the commit the run reads, once per process,
# so the fingerprint (computed first, without weights) and the weights loaded later name the same files.

HUB_INFO_TIMEOUT_S = 10.0
_commits: dict[tuple[str, str, str, str], str] = {}


def hub_commit(repo: str, revision: Optional[str], files: list[str],
               error: Callable[[str], ModelLoadError]) -> str:
    """The 40-hex commit that ``revision`` (default main) of hub ``repo`` names: a commit as it is; else the
    hub's answer when it is reachable (one metadata request, nothing downloaded), else the Hugging Face cache's
    record (``refs/<revision>``, the snapshot that holds the first cached of ``files``). ``error(why)`` is raised
    when neither knows: offline and not cached, the weights could not be loaded either.

    The answer is kept for the process: the load that follows the fingerprint reads this commit even if the
    branch moves meanwhile (a later process asks again)."""
    if revision is not None and COMMIT_HASH.fullmatch(revision):
        return revision
    from huggingface_hub import constants

    revision = revision or "main"
    key = (constants.HF_HUB_CACHE, constants.ENDPOINT, repo, revision)
    if key not in _commits:
        commit, why = _ask_hub(repo, revision)
        if commit is None:
            commit = _cached_commit(repo, revision, files)
            if commit is None:
                raise error(why)
            why = f"{why}; the Hugging Face cache's copy"
        log.info("%s@%s is commit %s (%s)", repo, revision, commit, why)
        _commits[key] = commit
    return _commits[key]


def _ask_hub(repo: str, revision: str) -> tuple[Optional[str], str]:
    """(the hub's commit for the revision, None when it cannot say; why not)."""
    reason = hub_unreachable()
    if reason is not None:
        return None, reason
    from huggingface_hub import HfApi

    try:
        commit = HfApi().model_info(repo, revision=revision, timeout=HUB_INFO_TIMEOUT_S).sha
    except Exception as exc:  # noqa: BLE001 - not found, gated, auth, timeout: the cache may still know
        return None, f"the hub did not name its commit ({type(exc).__name__}: {_first_line(exc)})"
    if not isinstance(commit, str) or not COMMIT_HASH.fullmatch(commit):
        return None, f"the hub named no commit for {repo}@{revision} (got {commit!r})"
    return commit, "the hub's answer"


def _cached_commit(repo: str, revision: str, files: list[str]) -> Optional[str]:
    """The commit ``refs/<revision>`` of the Hugging Face cache names, when its snapshot holds one of ``files``."""
    from huggingface_hub import try_to_load_from_cache

    for name in files:
        path = try_to_load_from_cache(repo, name, revision=revision)
        if isinstance(path, str):  # else None (not cached) or the cache's "known not to exist" marker
            snapshot = Path(path).parents[len(Path(name).parts) - 1]  # .../snapshots/<commit>/<name>
            if snapshot.parent.name == "snapshots" and COMMIT_HASH.fullmatch(snapshot.name):
                return snapshot.name
    return None


@contextlib.contextmanager
def hub_offline_mode() -> Iterator[None]:
    """huggingface_hub in offline mode for the block: a library that calls ``hf_hub_download`` itself (open_clip)
    takes the cached file without a request instead of waiting on the hub."""
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def cached_hub_file(repo: str, filenames: list[str], revision: Optional[str] = None) -> Optional[Path]:
    """The first of ``filenames`` of ``repo`` in the Hugging Face cache (no request), or None."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for name in filenames:
        try:
            return Path(hf_hub_download(repo, name, revision=revision, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            continue
    return None


def hub_file(repo: str, filenames: list[str], revision: Optional[str] = None, download: bool = True,
             local_name: Optional[str] = None) -> Path:
    """A hub file (the first of ``filenames`` that exists): from the cache; else downloaded, when ``download``
    and the hub answers. Otherwise one ModelLoadError naming the file and the three ways to provide it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    cached = cached_hub_file(repo, filenames, revision)
    if cached is not None:
        return cached
    reason = hub_unreachable() if download else "downloads are off here"
    if reason:
        raise missing_weights_error(repo, filenames, reason, local_name)
    for name in filenames:
        try:
            return Path(hf_hub_download(repo, name, revision=revision))
        except EntryNotFoundError as exc:  # try the next name (open_clip: .safetensors, then .bin)
            reason = f"not on the hub ({type(exc).__name__}: {_first_line(exc)})"
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
            reason = f"the download failed ({type(exc).__name__}: {_first_line(exc)})"
            break
    raise missing_weights_error(repo, filenames, reason or "not found", local_name)


def missing_weights_error(repo: str, filenames: list[str], reason: str,
                          local_name: Optional[str] = None) -> ModelLoadError:
    """The one message for hub weights that cannot be had here: which file, why, and the three ways."""
    from huggingface_hub import constants

    name = filenames[0] + (f" (or {', '.join(filenames[1:])})" if len(filenames) > 1 else "")
    folder = os.environ.get("EVALSUITE_WEIGHTS_DIR")
    place = f"{folder or '$EVALSUITE_WEIGHTS_DIR'}/{local_name or filenames[0]}"
    return ModelLoadError(
        f"weights file {name} of {repo} is not available here: {reason}, and it is not in the Hugging Face cache"
        f" ({constants.HF_HUB_CACHE}). Provide it in one of three ways: (1) --weights /path/to/{filenames[0]};"
        f" (2) put it at {place}" + ("" if folder else " and set EVALSUITE_WEIGHTS_DIR") + ";"
        f" (3) fill a Hugging Face cache where the hub is reachable (`hf download {repo} {filenames[0]}`) and"
        " point HF_HOME (or HF_HUB_CACHE) at it."
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


# ---------------------------------------------------------------------------------------------------------------
# open_clip pretrained tags: the hub file behind the tag, resolved through the path above before open_clip runs


def open_clip_tag_files(architecture: str, tag: str) -> Optional[tuple[str, list[str]]]:
    """(hub repo, file names in the order open_clip tries them) for an open_clip tag downloaded from the hub;
    None for a tag open_clip fetches from a URL, or when open_clip does not know the tag.

    Memoised per open_clip version under ``$EVALSUITE_CACHE_DIR/open_clip_tags``: the model fingerprint needs it
    on every run, and a fully cached re-run should not pay open_clip's import (about 3 s) to learn it."""
    import importlib.metadata as md

    try:
        version = md.version("open_clip_torch")
    except md.PackageNotFoundError:
        return None
    memo = _tag_memo_path(version)
    known = _read_tag_memo(memo)
    key = f"{architecture}/{tag}"
    if key not in known:
        try:
            known[key] = _open_clip_tag_files(architecture, tag)
        except ImportError:  # installed but not importable: the adapter says so when it builds the model
            return None
        _write_tag_memo(memo, known)
    entry = known[key]
    return None if entry is None else (entry[0], list(entry[1]))


def _open_clip_tag_files(architecture: str, tag: str) -> Optional[list]:
    """[repo, names] from open_clip's own table of pretrained tags (see open_clip_tag_files)."""
    import open_clip
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    cfg = open_clip.get_pretrained_cfg(architecture, tag)
    hub = (cfg or {}).get("hf_hub")
    if not hub or "file" in cfg:
        return None
    repo, filename = os.path.split(hub)  # 'org/name/' (default file name) or 'org/name/file.bin'
    filename = filename or HF_WEIGHTS_NAME
    names = [filename]
    if importlib.util.find_spec("safetensors") is not None:  # open_clip prefers the .safetensors beside it
        if filename == HF_WEIGHTS_NAME:
            names.insert(0, HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
    return [repo, names]


def _tag_memo_path(open_clip_version: str) -> Path:
    from ..resources import default_cache_dir

    safetensors = "st" if importlib.util.find_spec("safetensors") is not None else "nost"  # changes the names
    return default_cache_dir() / "open_clip_tags" / f"{open_clip_version}-{safetensors}.json"


def _read_tag_memo(memo: Path) -> dict:
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent or damaged: asked of open_clip again
        return {}
    valid = isinstance(known, dict) and all(
        v is None or (isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], list)
                      and v[1] and all(isinstance(n, str) for n in v[1])) for v in known.values())
    return known if valid else {}


def _write_tag_memo(memo: Path, known: dict) -> None:
    from ..atomic import atomic_write_bytes

    try:
        atomic_write_bytes(memo, json.dumps(known, sort_keys=True).encode())
    except OSError as exc:  # the answer is right either way; only the next run's import is at stake
        log.warning("cannot memoise open_clip's tag table in %s (%s)", memo.parent, exc.strerror or exc)


def open_clip_tag_identity(architecture: str, tag: str) -> dict:
    """What a tag's numbers depend on: the tag and, for a hub tag, the digest of the very file open_clip will
    load (the cached copy, else the one downloaded now). A tag names no version of its weights: the hub file
    behind it can be replaced, and a cache shared by two machines must not pair features of both."""
    hub = open_clip_tag_files(architecture, tag)
    if hub is None:  # fetched by open_clip from a URL (OpenAI's name their file's sha256, which open_clip checks)
        return {"open_clip_tag": tag}
    from .base import file_digest

    repo, names = hub
    path = hub_file(repo, names, local_name=f"{repo}/{names[0]}")
    return {"open_clip_tag": tag, "file_sha256": file_digest(path)}


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face cache snapshots: the local copy of one repo at one commit


def hf_snapshot_of(folder: Path) -> Optional[tuple[str, str]]:
    """(repo id, commit) when ``folder`` is laid out as a Hugging Face cache snapshot,
    ``.../models--ORG--NAME/snapshots/<40-hex commit>``; else None."""
    folder = Path(folder).expanduser().absolute()
    commit, snapshots, repo_dir = folder.name, folder.parent, folder.parent.parent
    if snapshots.name != "snapshots" or not repo_dir.name.startswith("models--"):
        return None
    if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit):
        return None
    parts = repo_dir.name[len("models--"):].split("--")
    if len(parts) != 2 or not all(parts):
        return None
    return "/".join(parts), commit


def git_blob_sha1(data: bytes) -> str:
    """The id git (and the Hugging Face hub, for files not in LFS) gives a file's contents."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def snapshot_problem(folder: Path, repo: str, commit: str) -> Optional[str]:
    """None when ``folder`` is the cache snapshot of ``repo`` at ``commit`` with its code and config intact: each
    ``*.py`` and ``*.json`` is huggingface_hub's link into the repo's ``blobs/`` and its contents hash to that
    blob's name (the hub's id of the file), so an edited or added file is caught. Else what is wrong."""
    folder = Path(folder).expanduser().absolute()
    if hf_snapshot_of(folder) != (repo, commit):
        return f"{folder} is not the Hugging Face cache snapshot of {repo} at commit {commit}"
    blobs = (folder.parent.parent / "blobs").resolve()
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".py", ".json")):
        if not path.is_symlink():
            return f"{path} is not a link into the cache's blobs (copied or edited), so it cannot be verified"
        target = path.resolve()
        if target.parent != blobs:
            return f"{path} points outside the snapshot's blobs ({target})"
        try:
            digest = git_blob_sha1(target.read_bytes())
        except OSError as exc:
            return f"{path} cannot be read ({exc.strerror or exc})"
        if digest != target.name:
            return f"{path}: its contents do not match the hub's id of the file (edited after download)"
    return None


# ---------------------------------------------------------------------------------------------------------------
# A weights file the user names: checked before any library reads it, and its load errors explained in one line

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # torch's legacy format begins with a protocol-2 pickle


def check_weights_file(path: Path) -> None:
    """One ModelLoadError (the file and what is wrong with it) for a file that cannot be a checkpoint: missing,
    not a regular file, empty, truncated, or in none of the formats torch.save and safetensors write. Reads the
    header and seeks to the end; the contents are never quoted."""
    import stat
    import zipfile

    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ModelLoadError(f"weights {path}: not a regular file")
        if st.st_size == 0:
            raise ModelLoadError(f"weights {path}: the file is empty (0 bytes): a download or copy cut short?")
        with path.open("rb") as f:
            if path.suffix == ".safetensors":
                _check_safetensors(path, f, st.st_size)
                return
            if path.suffix in (".npz", ".npy"):  # open_clip's big_vision (SigLIP) weights: numpy's own checks
                return
            head = f.read(4)
            if head == _ZIP_MAGIC:
                if not zipfile.is_zipfile(f):
                    raise ModelLoadError(f"weights {path}: truncated or corrupted (a zip archive, the format"
                                         " torch.save writes, without its end: the file was cut short?)")
            elif head[:1] != bytes([_PICKLE_PROTO]):
                raise ModelLoadError(f"weights {path}: not a PyTorch checkpoint (neither the zip archive torch.save"
                                     " writes nor its legacy pickle format; a text file or another format?)")
    except OSError as exc:
        raise ModelLoadError(f"weights {path}: cannot be read ({exc.strerror or exc})") from exc


def _check_safetensors(path: Path, f, size: int) -> None:
    import json

    n = int.from_bytes(f.read(8), "little")
    if size < 8 or not 2 <= n <= size - 8:
        raise ModelLoadError(f"weights {path}: not a safetensors file, or truncated (its header length {n:,} does"
                             f" not fit in the file's {size:,} bytes)")
    try:
        header = json.loads(f.read(n))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise ModelLoadError(f"weights {path}: not a safetensors file (its header is not the JSON index of"
                             " tensors safetensors writes; corrupted?)") from None
    needed = 8 + n + max(ends, default=0)
    if needed > size:
        raise ModelLoadError(f"weights {path}: truncated: its header describes {needed:,} bytes, the file has"
                             f" {size:,} (a download or copy cut short?)")


def explain_weights_error(path, exc: BaseException) -> Optional[str]:
    """One line saying why a library could not load weights ``path``, for the errors that mean a bad file (a
    refused pickle, truncation, a corrupted archive or header, keys that do not fit); None for other errors."""
    import pickle

    text = " ".join(str(exc).split())
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in text.lower():
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" (it asks for {found.group(1)})" if found else ""
        return (f"weights {path}: refused: the file holds Python code or objects besides tensors{what}, which"
                " torch.load(weights_only=True) will not run; evalsuite never executes code from a weights file."
                " Re-save the state dict (torch.save(model.state_dict(), ...)) or a .safetensors copy from a"
                " source you trust")
    if isinstance(exc, (EOFError, pickle.UnpicklingError)):
        return f"weights {path}: truncated or not a PyTorch checkpoint (the pickle inside ends early or is damaged)"
    if "PytorchStreamReader" in text or "central directory" in text or "zip archive" in text:
        return f"weights {path}: truncated or corrupted (its zip archive cannot be read: the file was cut short?)"
    if type(exc).__name__ == "SafetensorError":
        return f"weights {path}: not a valid safetensors file ({text[:160]})"
    mismatch = state_dict_mismatch(str(exc))
    if mismatch:
        return f"weights {path}: do not fit the architecture: {mismatch}"
    return None


def state_dict_mismatch(message: str) -> Optional[str]:
    """torch's multi-line ``Error(s) in loading state_dict`` as one line: counts and the first keys."""
    if "Error(s) in loading state_dict" not in message:
        return None
    missing, unexpected, shapes = [], [], []
    for line in message.splitlines():
        line = line.strip()
        if line.startswith("Missing key(s)"):
            missing += re.findall(r'"([^"]+)"', line)
        elif line.startswith("Unexpected key(s)"):
            unexpected += re.findall(r'"([^"]+)"', line)
        elif line.startswith("size mismatch for "):
            shapes.append(line[len("size mismatch for "):].split(":")[0])

    def part(keys: list[str], what: str) -> str:
        return f"{len(keys)} {what}" + (f" ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})" if keys else "")

    parts = [part(keys, what) for keys, what in ((missing, "missing key(s)"), (unexpected, "unexpected key(s)"),
                                                  (shapes, "key(s) of another shape")) if keys]
    return "; ".join(parts) or " ".join(message.split())[:200]
