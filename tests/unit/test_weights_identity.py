"""A model's fingerprint names everything its features depend on (audit: stale numbers from the feature cache,
the classifier cache and resume). Each test here failed before its fix:

1. ``local-dir:`` open_clip folders: open_clip_config.json (quick_gelu, mean/std) and tokenizer files were
   outside the identity, only the weights file was hashed.
2. ``hf:FOLDER``: config.json, preprocessor_config.json and the tokenizer files were outside the identity.
3. ``hf:ORG/NAME`` and the cards' ``hf_file`` sources without a commit were identified as ``...@main``, so a
   moved branch kept the fingerprint; now the commit the run reads is resolved (the hub when reachable, else the
   Hugging Face cache) and the weights are read at that very commit.
4. Files over 256 MiB were digested by sampling (size, first and last 16 MiB): checkpoints differing only in
   middle blocks collided. Now the whole file is hashed, once per file version (a memo on disk).
5. open_clip tags were identified by the tag alone; now by the digest of the hub file open_clip loads.

The hub is mocked as in test_weights_offline / test_remote_code_trust: a hub cache in tmp_path, offline mode
or a mocked ``HfApi.model_info``; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from evalsuite.errors import ModelLoadError
from evalsuite.models import base, weights
from evalsuite.models.base import file_digest, model_fingerprint
from evalsuite.models.card import find_card
from evalsuite.models.eva_native import EvaNativeAdapter
from evalsuite.models.hf_adapter import HfAdapter
from evalsuite.models.loading import load_model, resolve_card
from evalsuite.models.open_clip_adapter import OpenClipAdapter
from evalsuite.models.tiny import write_tiny_clip

A, B, C = "a" * 40, "b" * 40, "c" * 40
REPO_ID = "audit/tinyclip"
EVA_FILE = "EVA_CLIP_8B_psz14_s9B.pt"


def fingerprint(model: str, adapter_cls) -> str:
    return model_fingerprint(adapter_cls, resolve_card(model), "fp32")


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(json.dumps(data))


# --- 1. local-dir: the folder's config and tokenizer files ----------------------------------------------------

def test_local_dir_config_and_tokenizer_edits_change_the_fingerprint(tmp_path):
    folder = write_tiny_clip(tmp_path / "model", seed=0)
    model = f"local-dir:{folder}"
    seen = {fingerprint(model, OpenClipAdapter)}
    edit_json(folder / "open_clip_config.json", model_cfg__quick_gelu=True)
    seen.add(fingerprint(model, OpenClipAdapter))
    edit_json(folder / "open_clip_config.json", preprocess_cfg__mean=[0.5, 0.5, 0.5])
    seen.add(fingerprint(model, OpenClipAdapter))
    (folder / "tokenizer.json").write_text("{}")  # read by open_clip's HFTokenizer when hf_tokenizer_name is set
    seen.add(fingerprint(model, OpenClipAdapter))
    assert len(seen) == 4


def test_local_dir_checkpoint_open_clip_never_reads_stays_out(tmp_path):
    """open_clip_model.safetensors wins in a folder (ours and open_clip's rule): another checkpoint beside it is
    never read, so it is neither hashed nor part of the identity."""
    folder = write_tiny_clip(tmp_path / "model", seed=0)
    (folder / "old.bin").write_bytes(b"x" * 100)
    before = fingerprint(f"local-dir:{folder}", OpenClipAdapter)
    (folder / "old.bin").write_bytes(b"y" * 100)
    assert fingerprint(f"local-dir:{folder}", OpenClipAdapter) == before


# --- 2. hf:FOLDER: every file transformers reads -------------------------------------------------------------

@pytest.mark.parametrize("name, edit", [
    ("config.json", {"vision_config__hidden_act": "gelu"}),
    ("preprocessor_config.json", {"image_mean": [0.5, 0.5, 0.5]}),
    ("tokenizer_config.json", {"model_max_length": 64}),
    ("vocab.json", {"a</w>": 7}),
])
def test_hf_folder_config_processor_and_tokenizer_edits_change_the_fingerprint(tmp_path, name, edit):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")  # the identity reads bytes, never tensors
    for each in ("config.json", "preprocessor_config.json", "tokenizer_config.json", "vocab.json"):
        (folder / each).write_text(json.dumps({"vision_config": {"hidden_act": "quick_gelu"}, "a</w>": 1}))
    before = fingerprint(f"hf:{folder}", HfAdapter)
    edit_json(folder / name, **edit)
    assert fingerprint(f"hf:{folder}", HfAdapter) != before


# --- 3. unpinned hub sources: the commit the run reads --------------------------------------------------------

@pytest.fixture
def hub(empty_hub, monkeypatch):
    """The empty offline Hugging Face cache (conftest), no weights folder, no commit resolved earlier here."""
    monkeypatch.delenv("EVALSUITE_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(weights, "_commits", {}, raising=False)
    monkeypatch.setattr(weights, "_probes", {})
    return empty_hub


def cached_snapshot(cache: Path, repo: str, commit: str, files: dict[str, bytes], ref: str = "main") -> Path:
    """huggingface_hub's cache layout: ``models--ORG--NAME/snapshots/<commit>/<files>`` and ``refs/<ref>``."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / ref).write_text(commit)
    return snapshot


def online(monkeypatch, commit: str | Exception) -> list:
    """The hub reachable, its ``model_info`` answering ``commit``; returns the (repo, revision) it was asked."""
    from huggingface_hub import constants

    asked = []

    def model_info(self, repo_id, revision=None, **kwargs):
        asked.append((repo_id, revision))
        if isinstance(commit, Exception):
            raise commit
        return SimpleNamespace(sha=commit)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "hub_unreachable", lambda: None)
    monkeypatch.setattr("huggingface_hub.HfApi.model_info", model_info)
    return asked


def no_downloads(monkeypatch) -> list:
    """``hf_hub_download``: cache hits as usual; a download is recorded (revision) and served from tmp."""
    from huggingface_hub import hf_hub_download

    fetched = []

    def download(repo_id, filename, revision=None, local_files_only=False, **kwargs):
        if local_files_only:
            return hf_hub_download(repo_id, filename, revision=revision, local_files_only=True, **kwargs)
        fetched.append(revision)
        raise AssertionError(f"downloaded {repo_id}/{filename}@{revision}")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    return fetched


def test_moved_main_in_the_cache_changes_the_hf_repo_fingerprint(hub, monkeypatch):
    cached_snapshot(hub, REPO_ID, A, {"config.json": b"{}"})
    first = HfAdapter.weights_identity(resolve_card(f"hf:{REPO_ID}"))
    assert first == {"hf_repo": f"{REPO_ID}@{A}"}
    cached_snapshot(hub, REPO_ID, B, {"config.json": b"{}"})  # main moved (a newer download)
    monkeypatch.setattr(weights, "_commits", {}, raising=False)  # a new process
    assert HfAdapter.weights_identity(resolve_card(f"hf:{REPO_ID}")) == {"hf_repo": f"{REPO_ID}@{B}"}


def test_moved_main_in_the_cache_changes_the_hf_file_fingerprint(hub, monkeypatch):
    card = find_card("EVA-CLIP-8B")
    assert EvaNativeAdapter.weights_source(card).revision is None  # the built-in card pins no commit
    cached_snapshot(hub, "BAAI/EVA-CLIP-8B", A, {EVA_FILE: b"w"})
    assert EvaNativeAdapter.weights_identity(card) == {"hf_file": f"BAAI/EVA-CLIP-8B/{EVA_FILE}@{A}"}
    cached_snapshot(hub, "BAAI/EVA-CLIP-8B", B, {EVA_FILE: b"w2"})
    monkeypatch.setattr(weights, "_commits", {}, raising=False)
    assert EvaNativeAdapter.weights_identity(card) == {"hf_file": f"BAAI/EVA-CLIP-8B/{EVA_FILE}@{B}"}


def test_online_the_hub_names_the_commit_and_the_file_is_downloaded_at_it(hub, monkeypatch, tmp_path):
    """The hub's main is C (the cache still says A): the fingerprint names C, resolving it downloads nothing, and
    the weights are then downloaded at C, not at whatever main is by then."""
    cached_snapshot(hub, "BAAI/EVA-CLIP-8B", A, {EVA_FILE: b"old"})
    asked = online(monkeypatch, C)
    fetched = no_downloads(monkeypatch)
    card = find_card("EVA-CLIP-8B")
    assert EvaNativeAdapter.weights_identity(card) == {"hf_file": f"BAAI/EVA-CLIP-8B/{EVA_FILE}@{C}"}
    assert asked == [("BAAI/EVA-CLIP-8B", "main")] and fetched == []
    with pytest.raises(AssertionError, match=f"downloaded BAAI/EVA-CLIP-8B/{EVA_FILE}@{C}"):
        weights.resolve(EvaNativeAdapter.weights_source(card))
    assert fetched == [C] and len(asked) == 1  # asked once per process: the load reads the fingerprint's commit


def test_online_hf_repo_fingerprint_names_the_hubs_commit(hub, monkeypatch):
    asked = online(monkeypatch, C)
    assert HfAdapter.weights_identity(resolve_card(f"hf:{REPO_ID}")) == {"hf_repo": f"{REPO_ID}@{C}"}
    assert asked == [(REPO_ID, "main")]


def test_hub_error_falls_back_to_the_caches_commit(hub, monkeypatch):
    cached_snapshot(hub, REPO_ID, A, {"config.json": b"{}"})
    online(monkeypatch, OSError("401 gated"))
    assert HfAdapter.weights_identity(resolve_card(f"hf:{REPO_ID}")) == {"hf_repo": f"{REPO_ID}@{A}"}


def test_offline_and_not_cached_is_a_clear_error_not_a_main_fingerprint(hub):
    """No fingerprint without a commit: one that said ``@main`` would match whatever main was when cached."""
    with pytest.raises(ModelLoadError, match=f"hf:{REPO_ID}: not found locally or in the Hugging Face cache"
                                             r" \(HF_HUB_OFFLINE is set\)"):
        HfAdapter.weights_identity(resolve_card(f"hf:{REPO_ID}"))
    with pytest.raises(ModelLoadError, match=f"{EVA_FILE} of BAAI/EVA-CLIP-8B is not available here"):
        EvaNativeAdapter.weights_identity(find_card("EVA-CLIP-8B"))


def tiny_hf_clip(folder: Path, seed: int) -> None:
    from test_hf_adapter import clip_tokenizer_files
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         max_position_embeddings=77, vocab_size=49408),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8), projection_dim=16)
    CLIPModel(cfg).eval().save_pretrained(folder)
    clip_tokenizer_files(folder)
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32).save_pretrained(folder)


def test_weights_are_loaded_at_the_commit_the_fingerprint_names(hub):
    """main moves after the fingerprint was computed (a download by another process): the run still loads the
    commit its fingerprint names, never the new main's weights under the old fingerprint."""
    from transformers import CLIPModel

    snapshot_a = cached_snapshot(hub, REPO_ID, A, {})
    tiny_hf_clip(snapshot_a, seed=0)
    card = resolve_card(f"hf:{REPO_ID}")
    assert HfAdapter.weights_identity(card) == {"hf_repo": f"{REPO_ID}@{A}"}
    tiny_hf_clip(cached_snapshot(hub, REPO_ID, B, {}), seed=1)  # refs/main -> B now
    model = load_model(card, "cpu")
    expected = CLIPModel.from_pretrained(snapshot_a).text_projection.weight
    assert torch.equal(model.module.text_projection.weight, expected)
    assert HfAdapter.weights_identity(card) == {"hf_repo": f"{REPO_ID}@{A}"}


# --- 4. whole-file digests, memoised per file version -------------------------------------------------------

def sparse_file(path: Path, size: int, middle: bytes) -> Path:
    with path.open("wb") as f:  # sparse: no disk used
        f.truncate(size)
        f.seek(size // 2)
        f.write(middle * 4096)
    return path


def test_checkpoints_differing_only_in_middle_blocks_get_different_digests(tmp_path):
    size = 300 << 20  # over the old 256 MiB sampling threshold
    a = sparse_file(tmp_path / "a.pt", size, b"\x01")
    b = sparse_file(tmp_path / "b.pt", size, b"\x02")
    assert file_digest(a) != file_digest(b)


def test_small_file_digest_is_unchanged(tmp_path):
    """Size then contents, as before the memo: fingerprints of --weights files under 256 MiB stay valid."""
    data = os.urandom(1000)
    (tmp_path / "w.pt").write_bytes(data)
    assert file_digest(tmp_path / "w.pt") == hashlib.sha256(str(len(data)).encode() + data).hexdigest()[:16]


@pytest.fixture
def memo_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(base, "DIGEST_MEMO_MIN_BYTES", 1 << 20, raising=False)  # small files stand in for large
    base._digest.cache_clear()
    yield tmp_path / "cache" / "digests"
    base._digest.cache_clear()


def test_full_digest_is_memoised_on_disk_once_per_file_version(memo_dir, tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    path.write_bytes(os.urandom(2 << 20))
    first = file_digest(path)
    assert len(list(memo_dir.glob("*.json"))) == 1 and not list(memo_dir.glob(".*"))  # no temp file left
    with monkeypatch.context() as m:  # another process: the digest comes from the memo, the file is not read
        base._digest.cache_clear()
        m.setattr(base, "_hash_file", lambda version: pytest.fail(f"{version.path} hashed again"))
        assert file_digest(path) == first
    st = path.stat()
    with path.open("r+b") as f:  # an in-place edit in the middle, its mtime set back: still a new version
        f.seek(1 << 20)
        f.write(b"\x00" * 16 if f.read(16) != b"\x00" * 16 else b"\x01" * 16)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    base._digest.cache_clear()
    second = file_digest(path)
    assert second != first and len(list(memo_dir.glob("*.json"))) == 2


def test_damaged_memo_is_recomputed(memo_dir, tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(os.urandom(2 << 20))
    first = file_digest(path)
    (memo,) = memo_dir.glob("*.json")
    memo.write_text('{"file": {}, "sha256": "0000000000000000"}')  # another file's entry, or a damaged one
    base._digest.cache_clear()
    assert file_digest(path) == first


# --- 5. open_clip tags: the file behind the tag -----------------------------------------------------------------

EVA02_REPO = "timm/eva02_base_patch16_clip_224.merged2b_s8b_b131k"
EVA02_FILE = "open_clip_model.safetensors"


def test_an_open_clip_tags_identity_is_the_file_it_loads(hub, monkeypatch, tmp_path):
    """A tag names no version of its weights: the hub file behind it was identified by the tag alone, so features
    of replaced weights (a new download into a shared feature cache) were served under the old fingerprint."""
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    card = find_card("EVA02-CLIP-B-16")
    cached_snapshot(hub, EVA02_REPO, A, {EVA02_FILE: b"weights v1"})
    first = OpenClipAdapter.weights_identity(card)
    assert first == {"open_clip_tag": "merged2b_s8b_b131k", "file_sha256": file_digest(
        hub / f"models--{EVA02_REPO.replace('/', '--')}" / "snapshots" / A / EVA02_FILE)}
    cached_snapshot(hub, EVA02_REPO, B, {EVA02_FILE: b"weights v2"})  # main moved, other weights
    assert OpenClipAdapter.weights_identity(card) != first
    cached_snapshot(hub, EVA02_REPO, C, {EVA02_FILE: b"weights v2"})  # a README commit: the same weights
    second = OpenClipAdapter.weights_identity(card)
    cached_snapshot(hub, EVA02_REPO, B, {EVA02_FILE: b"weights v2"}, ref="main")
    assert OpenClipAdapter.weights_identity(card) == second != first


def test_an_uncached_open_clip_tag_offline_is_the_missing_weights_error(hub, monkeypatch, tmp_path):
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match=f"{EVA02_FILE}.*{EVA02_REPO}.*is not available here"):
        OpenClipAdapter.weights_identity(find_card("EVA02-CLIP-B-16"))


def test_the_tag_table_is_read_from_open_clip_once_per_version(monkeypatch, tmp_path):
    """The fingerprint needs the tag's hub file on every run; a fully cached re-run must not import open_clip."""
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    expected = (EVA02_REPO, [EVA02_FILE, "open_clip_pytorch_model.bin"])
    assert weights.open_clip_tag_files("EVA02-B-16", "merged2b_s8b_b131k") == expected
    monkeypatch.setattr(weights, "_open_clip_tag_files", lambda *a: pytest.fail("open_clip asked again"))
    assert weights.open_clip_tag_files("EVA02-B-16", "merged2b_s8b_b131k") == expected
    (memo,) = (tmp_path / "cache" / "open_clip_tags").iterdir()
    memo.write_text("{not json")  # damaged: asked of open_clip again, not trusted
    monkeypatch.undo()
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    assert weights.open_clip_tag_files("EVA02-B-16", "merged2b_s8b_b131k") == expected


def test_an_open_clip_that_cannot_be_imported_memoises_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))

    def broken(*args):
        raise ImportError("a broken install")

    monkeypatch.setattr(weights, "_open_clip_tag_files", broken)
    assert weights.open_clip_tag_files("EVA02-B-16", "merged2b_s8b_b131k") is None
    assert not (tmp_path / "cache" / "open_clip_tags").exists()
