"""Remote code (issue 16, section 4): a Hugging Face repo's own ``configuration_*.py`` / ``modeling_*.py`` runs
only from the repo a model card trusts, at the commit the card pins (or that commit's verified cache snapshot);
any other folder needs --trust-remote-code; --weights replaces the weights, never the code.

The marker: a folder whose config.json maps AutoConfig/AutoModel to Python files that write a file when imported.
Before the fix, ``--model hf:BAAI/EVA-CLIP-8B --weights FOLDER`` imported the folder's configuration file (the
marker was written) because the card's trust_remote_code was applied to whatever folder replaced the weights.
The hub is never reached: an empty Hugging Face cache, offline mode, and fake cache snapshots for "pinned" repos.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evalsuite.cli import main
from evalsuite.errors import ConfigError, ModelLoadError
from evalsuite.models.card import all_cards, load_card_file
from evalsuite.models.loading import load_model, resolve_card
from evalsuite.models.weights import git_blob_sha1

PIN = "1234567890abcdef1234567890abcdef12345678"  # the fake repo's pinned commit
REPO_ID = "acme/remote-clip"
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


# --- fixtures: folders with code that leaves a marker ------------------------------------------------------------

CONFIG_PY = '''
import pathlib
pathlib.Path({marker!r}).write_text("imported")
from transformers import PretrainedConfig


class XConfig(PretrainedConfig):
    model_type = "x_custom"
'''

MODELING_PY = '''
import torch
from transformers import PreTrainedModel
from .configuration_x import XConfig


class XModel(PreTrainedModel):
    config_class = XConfig

    def __init__(self, config):
        super().__init__(config)
        self.proj = torch.nn.Linear(4, 4, bias=False)
        self.post_init()

    def encode_image(self, pixels):
        return self.proj(pixels.flatten(1)[:, :4])

    def encode_text(self, tokens):
        return self.proj(tokens[:, :4].float())
'''


def code_files(marker: Path, foreign: bool = False) -> dict[str, bytes]:
    auto = {"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel"}
    if foreign:
        auto["AutoConfig"] = "someone/else--configuration_x.XConfig"
    return {"config.json": json.dumps({"model_type": "x_custom", "auto_map": auto}).encode(),
            "configuration_x.py": CONFIG_PY.format(marker=str(marker)).encode(),
            "modeling_x.py": MODELING_PY.encode()}


def weights_bytes(scale: float = 1.0) -> bytes:
    import torch
    from safetensors.torch import save

    return save({"proj.weight": torch.arange(16, dtype=torch.float32).reshape(4, 4) * scale})


def marker_folder(tmp_path: Path, name: str = "evil") -> tuple[Path, Path]:
    """A Hugging Face-style folder whose configuration_x.py writes ``marker`` when imported, and real weights."""
    folder, marker = tmp_path / name, tmp_path / f"{name}-code-ran"
    folder.mkdir()
    for file, data in code_files(marker).items():
        (folder / file).write_bytes(data)
    (folder / "model.safetensors").write_bytes(weights_bytes(scale=2.0))
    return folder, marker


def tokenizer_files() -> dict[str, bytes]:
    """CLIP tokenizer files (from open_clip's bundled BPE, no download), as transformers saves them."""
    import tempfile

    import open_clip
    from transformers import CLIPTokenizer

    tok = open_clip.SimpleTokenizer()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "vocab.json").write_text(json.dumps({rename.get(k, k): v for k, v in tok.encoder.items()}))
        merges = sorted(tok.bpe_ranks, key=tok.bpe_ranks.get)
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
        out = folder / "saved"
        CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(out)
        return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def fake_snapshot(hub: Path, repo: str, commit: str, files: dict[str, bytes]) -> Path:
    """huggingface_hub's cache layout: blobs named by the hub's file id, the snapshot's files linking to them."""
    repo_dir = hub / f"models--{repo.replace('/', '--')}"
    blobs, snapshot = repo_dir / "blobs", repo_dir / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for name, data in files.items():
        blob = blobs / git_blob_sha1(data)
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def pinned_card(inc: Path, revision: str = PIN, ref: str = REPO_ID, extra: str = "") -> Path:
    (inc / "cards").mkdir(parents=True, exist_ok=True)
    path = inc / "cards" / "acme-remote.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: acme-remote
        adapter: hf
        architecture: {ref}
        image_size: 32
        preprocess: {{mean: {MEAN}, std: {STD}}}
        weights:
        - kind: hf_repo
          ref: {ref}
        {"  revision: " + revision if revision else ""}
        trust_remote_code: true
        precision: fp32
        """) + extra)
    return path


def run_cli(capsys, tmp_path, *args):
    code = main(["run", *args, "--tasks", "demo_shapes", "--output-dir", str(tmp_path / "out"), "--workers", "0",
                 "--device", "cpu"])
    err = capsys.readouterr().err
    return code, err


# --- the marker is never written without --trust-remote-code -----------------------------------------------------

def test_weights_override_never_runs_the_folders_code(empty_hub, tmp_path, capsys):
    folder, marker = marker_folder(tmp_path)
    code, err = run_cli(capsys, tmp_path, "--model", "hf:BAAI/EVA-CLIP-8B", "--weights", str(folder))
    assert not marker.exists(), "the --weights folder's configuration_x.py was imported"
    assert code == 2 and "Traceback" not in err and "internal error" not in err, err
    line = err.strip().splitlines()[-1]
    assert "0e4dca944e8ece27eb9dfe4a488c0ed0c4644fc9" in line and "--weights replaces the weights only" in line
    assert "--trust-remote-code" in line


def test_a_folder_no_card_pins_needs_the_flag(empty_hub, tmp_path, capsys):
    folder, marker = marker_folder(tmp_path)
    code, err = run_cli(capsys, tmp_path, "--model", f"hf:{folder}")
    assert not marker.exists()
    assert code == 2 and "Traceback" not in err, err
    assert "needs its own modelling code" in err and "--trust-remote-code" in err


def test_the_flag_is_accepted_by_run_and_reaches_the_run_config():
    from evalsuite.cli import build_parser
    from evalsuite.config import RunConfig

    args = build_parser().parse_args(["run", "--model", "hf:x", "--tasks", "demo", "--trust-remote-code"])
    assert args.trust_remote_code is True
    assert build_parser().parse_args(["run", "--model", "hf:x", "--tasks", "demo"]).trust_remote_code is False
    assert RunConfig(model="m", tasks=["t"]).trust_remote_code is False


def test_unpinned_card_is_refused_before_anything_is_read(empty_hub, tmp_path, capsys):
    inc = tmp_path / "inc"
    pinned_card(inc, revision="")
    folder, marker = marker_folder(tmp_path)
    code, err = run_cli(capsys, tmp_path, "--model", f"hf:{REPO_ID}", "--weights", str(folder),
                        "--include-path", str(inc))
    assert not marker.exists()
    assert code == 2 and "pins no commit" in err and "revision:" in err, err


def test_tampered_snapshot_is_refused(empty_hub, tmp_path):
    inc = tmp_path / "inc"
    pinned_card(inc)
    marker = tmp_path / "pinned-code-ran"
    snapshot = fake_snapshot(empty_hub, REPO_ID, PIN, code_files(marker))
    blob = (snapshot / "configuration_x.py").resolve()
    blob.write_text(blob.read_text() + "\n# edited after download\n")
    card = resolve_card(f"hf:{snapshot}", include_paths=[inc])
    assert card.name == f"hf:{REPO_ID}"
    with pytest.raises(ModelLoadError, match="cannot be verified.*edited after download"):
        load_model(card, "cpu")
    assert not marker.exists()


def test_edited_code_in_the_cache_is_refused_for_the_pinned_repo(empty_hub, tmp_path):
    inc = tmp_path / "inc"
    pinned_card(inc)
    marker = tmp_path / "pinned-code-ran"
    snapshot = fake_snapshot(empty_hub, REPO_ID, PIN, code_files(marker))
    link = snapshot / "configuration_x.py"
    edited = link.read_text().replace("imported", "edited")
    link.unlink()
    link.write_text(edited)  # replaced by a plain file: no longer the hub's blob
    with pytest.raises(ModelLoadError, match="in the Hugging Face cache cannot be verified.*not a link"):
        load_model(resolve_card(f"hf:{REPO_ID}", include_paths=[inc]), "cpu")
    assert not marker.exists()


def test_code_from_another_repo_is_refused(empty_hub, tmp_path):
    inc = tmp_path / "inc"
    pinned_card(inc)
    marker = tmp_path / "pinned-code-ran"
    fake_snapshot(empty_hub, REPO_ID, PIN, code_files(marker, foreign=True))
    with pytest.raises(ModelLoadError, match="loads code from another repo \\(someone/else\\)"):
        load_model(resolve_card(f"hf:{REPO_ID}", include_paths=[inc]), "cpu")
    assert not marker.exists()


# --- cards: trust belongs to a hub repo at a pinned commit --------------------------------------------------------

@pytest.mark.parametrize("revision, ref, message", [
    ("main", REPO_ID, "full commit hash"),
    ("v1.0", REPO_ID, "full commit hash"),
    ("abc1234", REPO_ID, "full commit hash"),
    (PIN, "/some/folder", "never a local folder"),
    (PIN, "../folder", "never a local folder"),
])
def test_card_that_trusts_remote_code_must_pin_a_hub_commit(tmp_path, revision, ref, message):
    path = pinned_card(tmp_path / "inc", revision=revision, ref=ref)
    with pytest.raises(ConfigError, match=message) as err:
        load_card_file(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: ", str(err.value))  # file and line


def test_trust_without_an_hf_repo_source_is_refused(tmp_path):
    (tmp_path / "cards").mkdir()
    path = tmp_path / "cards" / "x.yaml"
    path.write_text("name: x\nadapter: open_clip\narchitecture: ViT-B-32\nweights:\n- kind: open_clip_tag\n"
                    "  ref: openai\ntrust_remote_code: true\n")
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))}:7: trust_remote_code: true applies to"):
        load_card_file(path)


def test_every_builtin_card_with_remote_code_pins_a_commit_or_is_refused(empty_hub):
    pinned = {}
    for name, card in all_cards().items():
        if not card.trust_remote_code:
            continue
        assert card.code_source is not None and card.code_source.kind == "hf_repo"
        if card.code_source.revision is not None:
            assert re.fullmatch(r"[0-9a-f]{40}", card.code_source.revision)
            pinned[name] = card.code_source.revision
        else:  # no verified commit: the loader refuses its remote code, naming the card
            with pytest.raises(ModelLoadError, match=f"'hf:{card.code_source.ref}'.*pins no commit"):
                load_model(resolve_card(f"hf:{card.code_source.ref}"), "cpu")
    assert pinned == {"EVA-CLIP-8B": "0e4dca944e8ece27eb9dfe4a488c0ed0c4644fc9",
                      "EVA-CLIP-18B": "ac8597aed12b1ecf2eda2130d0458bb1a0b50011"}


def test_hf_repo_identity_names_the_pinned_commit():
    from evalsuite.models.hf_adapter import HfAdapter

    assert HfAdapter.weights_identity(resolve_card("hf:BAAI/EVA-CLIP-8B")) == {
        "hf_repo": "BAAI/EVA-CLIP-8B@0e4dca944e8ece27eb9dfe4a488c0ed0c4644fc9"}


# --- pinned code does run: from the hub cache, its verified snapshot, and with --weights (weights only) -----------

PINNED_SCENARIOS = r"""
import json, sys
from pathlib import Path
import torch
from evalsuite.errors import ModelLoadError
from evalsuite.models.loading import load_model, resolve_card
inc, snapshot, folder, flagged = sys.argv[1:5]
out = {}
try:  # --trust-remote-code: the folder's own code runs (then its missing tokenizer stops the load)
    load_model(resolve_card("hf:" + flagged, trust_remote_code=True), "cpu")
except ModelLoadError as exc:
    out["flagged"] = str(exc)
for label, model, weights in [("repo", "hf:acme/remote-clip", None), ("snapshot", "hf:" + snapshot, None),
                              ("weights", "hf:acme/remote-clip", folder)]:
    m = load_model(resolve_card(model, weights, [Path(inc)]), "cpu")
    out[label] = {"class": type(m.module).__name__, "w00": float(m.module.proj.weight[0, 1]),
                  "module": type(m.module).__module__}
print(json.dumps(out))
"""


def test_pinned_code_runs_user_trust_runs_any_and_weights_override_keeps_the_pin(tmp_path):
    hub, inc = tmp_path / "hub", tmp_path / "inc"
    pinned_card(inc)
    pinned_marker = tmp_path / "pinned-code-ran"
    snapshot = fake_snapshot(hub, REPO_ID, PIN, {**code_files(pinned_marker), **tokenizer_files(),
                                                 "model.safetensors": weights_bytes(scale=1.0)})
    folder, folder_marker = marker_folder(tmp_path)
    flagged, flagged_marker = marker_folder(tmp_path, "flagged")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    # the copies transformers makes of remote code go to tmp_path, not the user's ~/.cache/huggingface/modules
    env.update(HF_HUB_CACHE=str(hub), HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", PINNED_SCENARIOS, str(inc), str(snapshot), str(folder),
                           str(flagged)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert pinned_marker.exists()  # the pinned commit's code ran ...
    assert not folder_marker.exists()  # ... and never the --weights folder's
    assert flagged_marker.exists() and "--trust-remote-code: running the modelling code of" in proc.stderr
    assert "tokenizer" in out.pop("flagged")
    assert {v["class"] for v in out.values()} == {"XModel"}
    assert out["repo"]["w00"] == 1.0 and out["snapshot"]["w00"] == 1.0  # the pinned repo's weights
    assert out["weights"]["w00"] == 2.0  # --weights: the folder's tensors in the pinned code's model


def test_the_flag_reaches_the_loader_through_the_cli(tmp_path):
    """`evalsuite run --trust-remote-code` runs a folder's own code (the runner passes the flag to resolve_card)."""
    folder, marker = marker_folder(tmp_path)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "evalsuite", "run", "--model", f"hf:{folder}", "--trust-remote-code",
                           "--tasks", "demo_shapes", "--output-dir", str(tmp_path / "out"), "--workers", "0",
                           "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
    assert marker.exists(), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
