"""The Python API through its public names only: evaluate() on a model name and on in-memory models (open_clip,
transformers), Results, load_results(), option checking, and the caller's model left as it was."""

import subprocess
import sys

import open_clip
import pytest
import torch

import evalsuite
from evalsuite.cli import main
from evalsuite.errors import UserInputError
from evalsuite.tidy import TIDY_COLUMNS
from helpers import CIFAR10_CLASSES, write_class_folders, write_include_task

METRICS = ("acc1", "acc5", "mean_per_class_recall")
COMPARED = ("metric", "value", "ci_low", "ci_high", "is_primary", "num_samples", "num_failed", "count_status",
            "partial", "protocol", "task_fingerprint")


@pytest.fixture
def world(tmp_path):
    """A 10-class task defined outside the package (no expected count: nothing is flagged) and its images."""
    inc = tmp_path / "inc"
    write_include_task(inc, "toy10", CIFAR10_CLASSES, templates=("a photo of a {c}.", "a {c}."), metrics=METRICS)
    write_class_folders(tmp_path / "data" / "toy10", CIFAR10_CLASSES, per_class=4)
    return {"data_root": tmp_path / "data", "include_paths": [inc], "workers": 0}


def cli_rows(tiny_model_dir, world, out):
    assert main(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "toy10", "--data-root",
                 str(world["data_root"]), "--output-dir", str(out), "--include-path", str(world["include_paths"][0]),
                 "--workers", "0"]) == 0
    (folder,) = out.iterdir()
    return evalsuite.load_results(folder, include_paths=world["include_paths"])


def open_clip_model(tiny_model_dir):
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny_model_dir}")
    return model, preprocess, open_clip.get_tokenizer(f"local-dir:{tiny_model_dir}")


def flags(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            {k: v.clone() for k, v in model.state_dict().items()})


def test_in_memory_open_clip_model_equals_the_cli_run(tiny_model_dir, world, tmp_path):
    cli = cli_rows(tiny_model_dir, world, tmp_path / "cli")
    model, preprocess, tokenizer = open_clip_model(tiny_model_dir)
    results = evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "api", preprocess=preprocess,
                                 tokenizer=tokenizer, **world)
    assert results.done == ["toy10"] and not results.failed and not results.flagged
    frame = results.to_pandas()
    assert list(frame.columns) == list(TIDY_COLUMNS) and list(frame["metric"]) == list(METRICS)
    assert frame[list(COMPARED)].equals(cli[list(COMPARED)])  # the same numbers, bit for bit
    assert results.primary == {"toy10": cli["value"][0]} and results.value("toy10", "acc5") == cli["value"][1]
    assert frame["adapter"][0] == "in_memory" and frame["weights"][0].startswith("in_memory:")
    assert results.paths["toy10"].is_file() and results.folder.parent == tmp_path / "api"
    # the model's own preprocess_cfg (no preprocess=) describes the same transform: same run, so it resumes
    again = evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "api", tokenizer=tokenizer, **world)
    assert again.skipped == ["toy10"] and again.done == [] and again.primary == results.primary
    # a model name through the API: the CLI's numbers too
    by_name = evalsuite.evaluate(f"local-dir:{tiny_model_dir}", ["toy10"], output_dir=tmp_path / "name", **world)
    assert by_name.to_pandas()[list(COMPARED)].equals(cli[list(COMPARED)])


def test_new_weights_are_a_new_result_and_training_state_is_restored(tiny_model_dir, world, tmp_path):
    model, preprocess, tokenizer = open_clip_model(tiny_model_dir)
    model.train()
    model.transformer.eval()  # a mix of flags, as a training loop may have (a frozen tower in eval mode)
    model.visual.requires_grad_(False)
    before = flags(model)
    first = evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "out", preprocess=preprocess,
                               tokenizer=tokenizer, **world)
    after = flags(model)
    assert after[0] == before[0] and after[1] == before[1]
    assert all(torch.equal(before[2][k], v) and v.dtype == torch.float32 for k, v in after[2].items())
    with torch.no_grad():  # a training step later: other weights, another identity, evaluated afresh
        model.logit_scale.add_(0.5)
        model.token_embedding.weight[0, 0] += 1.0
    second = evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "out", preprocess=preprocess,
                                tokenizer=tokenizer, **world)
    assert second.done == ["toy10"] and second.model_fingerprint != first.model_fingerprint
    assert second.folder != first.folder
    assert model.training and not model.transformer.training and not any(p.requires_grad for p in
                                                                          model.visual.parameters())
    # restored also when the run stops with an error after the model was wrapped
    with pytest.raises(UserInputError, match="unknown task"):
        evalsuite.evaluate(model, "no_such_task", output_dir=tmp_path / "out", preprocess=preprocess,
                           tokenizer=tokenizer, **world)
    assert [m.training for m in model.modules()] == before[0]


def test_unknown_and_bad_options_are_refused_like_the_cli(tiny_model_dir, world, tmp_path):
    model, preprocess, tokenizer = open_clip_model(tiny_model_dir)
    model.train()
    kwargs = dict(output_dir=tmp_path / "out", preprocess=preprocess, tokenizer=tokenizer, **world)
    with pytest.raises(TypeError, match=r"'batchsize' is not an option.*Did you mean: batch_size.*Known: .*limit"):
        evalsuite.evaluate(model, "toy10", batchsize=8, **kwargs)
    with pytest.raises(UserInputError, match="'weights' is an option of a model given by name"):
        evalsuite.evaluate(model, "toy10", weights="x.pt", **kwargs)
    with pytest.raises(ValueError, match=r"batch_size=0: expected a whole number from 1 to 65536"):
        evalsuite.evaluate(model, "toy10", batch_size=0, **kwargs)
    with pytest.raises(ValueError, match=r"batch_size='8': expected a whole number"):
        evalsuite.evaluate(model, "toy10", batch_size="8", **kwargs)
    with pytest.raises(ValueError, match="transform='crop': expected one of shortest, squash, best-of-both"):
        evalsuite.evaluate(model, "toy10", transform="crop", **kwargs)
    with pytest.raises(ValueError, match="cache_features=1: expected True or False"):
        evalsuite.evaluate(model, "toy10", cache_features=1, **kwargs)
    with pytest.raises(UserInputError, match="never casts your model"):
        evalsuite.evaluate(model, "toy10", precision="bf16", **kwargs)
    with pytest.raises(UserInputError, match="model is on cpu"):
        evalsuite.evaluate(model, "toy10", device="cuda:1", **kwargs)
    with pytest.raises(TypeError, match="pass the model alone"):
        evalsuite.evaluate((model, preprocess, tokenizer), "toy10", **world)
    with pytest.raises(TypeError, match="tokenizer="):
        evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "out", preprocess=preprocess, **world)
    with pytest.raises(TypeError, match="go with a model object"):
        evalsuite.evaluate(f"local-dir:{tiny_model_dir}", "toy10", tokenizer=tokenizer, **world)
    assert model.training and not (tmp_path / "out").exists()  # refused before anything ran or was written


def test_preprocessing_is_derived_exactly_or_refused(tiny_model_dir, world, tmp_path):
    model, preprocess, tokenizer = open_clip_model(tiny_model_dir)
    train_transform = open_clip.image_transform(32, is_train=True)
    with pytest.raises(UserInputError, match=r"RandomResizedCrop.*pass preprocess=evalsuite.Preprocessing"):
        evalsuite.evaluate(model, "toy10", preprocess=train_transform, tokenizer=tokenizer, **world)
    from evalsuite.models.tiny import build_tiny_clip

    bare = build_tiny_clip()  # open_clip.CLIP(...) built directly: no preprocess_cfg to read
    with pytest.raises(UserInputError, match="cannot be derived"):
        evalsuite.evaluate(bare, "toy10", tokenizer=tokenizer, **world)
    # the same transform described explicitly, and open_clip's squash transform, are both understood exactly
    described = evalsuite.Preprocessing(32, tuple(preprocess.transforms[-1].mean), tuple(preprocess.transforms[-1].std))
    one = evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "a", preprocess=preprocess, tokenizer=tokenizer,
                             **world)
    two = evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "a", preprocess=described, tokenizer=tokenizer,
                             **world)
    assert two.skipped == ["toy10"] and two.model_fingerprint == one.model_fingerprint
    squash = open_clip.image_transform(32, is_train=False, resize_mode="squash")
    three = evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "a", preprocess=squash, tokenizer=tokenizer,
                               **world)
    assert three.done == ["toy10"] and "transform=squash" in three.tasks["toy10"][0]["protocol"]


def test_any_module_with_the_clip_model_protocol(tiny_model_dir, world, tmp_path):
    base, preprocess, tokenizer = open_clip_model(tiny_model_dir)

    class Wrapped(torch.nn.Module):  # a user's own model: only the two methods of evalsuite.ClipModel
        def __init__(self):
            super().__init__()
            self.inner = base

        def encode_image(self, pixels):
            return self.inner.encode_image(pixels)

        def encode_text(self, tokens):
            return self.inner.encode_text(tokens)

    wrapped = Wrapped()
    assert isinstance(wrapped, evalsuite.ClipModel)
    p = preprocess.transforms[-1]
    got = evalsuite.evaluate(wrapped, "toy10", output_dir=tmp_path / "w", tokenizer=tokenizer, name="my-model",
                             preprocess=evalsuite.Preprocessing(32, p.mean, p.std), **world)
    want = evalsuite.evaluate(base, "toy10", output_dir=tmp_path / "o", tokenizer=tokenizer, **world)
    assert got.model == "my-model" and got.folder.name.startswith("my-model-")
    assert [r["value"] for r in got.tasks["toy10"]] == [r["value"] for r in want.tasks["toy10"]]


def test_a_failed_task_raises_with_the_other_results(tiny_model_dir, world, tmp_path):
    write_include_task(world["include_paths"][0], "nodata", ["a", "b"])
    model, preprocess, tokenizer = open_clip_model(tiny_model_dir)
    with pytest.raises(UserInputError, match="failed: nodata") as caught:
        evalsuite.evaluate(model, "toy10,nodata", output_dir=tmp_path / "out", preprocess=preprocess,
                           tokenizer=tokenizer, **world)
    results = caught.value.results
    assert list(results.tasks) == ["toy10"] and "nodata" in results.failed


def test_load_results_reads_cli_folders_into_one_schema(tiny_model_dir, world, tmp_path):
    out = tmp_path / "cli"
    frame = cli_rows(tiny_model_dir, world, out)
    (folder,) = out.iterdir()
    (folder / "history").mkdir()
    (folder / "history" / "toy10.0123.csv").write_text((folder / "toy10.csv").read_text())  # never read
    (folder / "toy10_old.csv").write_text((folder / "toy10.csv").read_text())  # a stray copy: skipped
    assert list(frame.columns) == list(TIDY_COLUMNS) and len(frame) == len(METRICS)
    assert frame["model"].eq(f"local-dir:{tiny_model_dir.name}").all() and frame["task"].eq("toy10").all()
    assert str(frame["value"].dtype) == "float64" and str(frame["is_primary"].dtype) == "bool"
    assert str(frame["expected_num_samples"].dtype) == "Int64" and frame["expected_num_samples"].isna().all()
    assert frame["is_primary"].tolist() == [True, False, False] and frame["ci_low"].notna().tolist()[0]
    assert frame["num_samples"].eq(40).all() and frame["count_status"].eq("unchecked").all()
    assert frame["path"].eq(str(folder / "toy10.csv")).all()
    import csv

    with (folder / "toy10.csv").open() as f:
        assert [float(r["value"]) for r in csv.DictReader(f)] == frame["value"].tolist()
    again = evalsuite.load_results([out, folder], include_paths=world["include_paths"])  # output dir + model dir
    assert again.equals(evalsuite.load_results(folder, include_paths=world["include_paths"]))


def test_hf_clip_model_in_memory_equals_the_cli_run(world, tmp_path):
    transformers = pytest.importorskip("transformers")
    from test_hf_adapter import clip_tokenizer_files

    folder = tmp_path / "hf"
    folder.mkdir()
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         max_position_embeddings=77, vocab_size=49408),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8), projection_dim=16)
    transformers.CLIPModel(cfg).eval().save_pretrained(folder)
    clip_tokenizer_files(folder)
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokenizer.save_pretrained(folder)
    image_processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32)
    image_processor.save_pretrained(folder)
    assert main(["run", "--model", f"hf:{folder}", "--tasks", "toy10", "--data-root", str(world["data_root"]),
                 "--output-dir", str(tmp_path / "cli"), "--include-path", str(world["include_paths"][0]),
                 "--workers", "0"]) == 0
    cli = evalsuite.load_results(tmp_path / "cli", include_paths=world["include_paths"])
    model = transformers.CLIPModel.from_pretrained(folder)
    processor = transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    got = evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "api", processor=processor, **world)
    compared = [c for c in COMPARED if c != "task_fingerprint"]
    assert got.to_pandas()[compared].equals(cli[compared])


def test_import_evalsuite_stays_light():
    code = ("import sys, evalsuite; evalsuite.evaluate; evalsuite.load_results; evalsuite.Results;"
            " assert not {'torch', 'pandas', 'open_clip'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_objects_write_no_feature_cache_unless_asked(tiny_model_dir, world, tmp_path, monkeypatch):
    """Every checkpoint of a training run is new weights: its features would be cached and never read again."""
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    model, preprocess, tokenizer = open_clip_model(tiny_model_dir)
    evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "a", preprocess=preprocess, tokenizer=tokenizer, **world)
    assert not list((tmp_path / "cache").glob("features/**/*.pt"))
    evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "b", preprocess=preprocess, tokenizer=tokenizer,
                       cache_features=True, **world)
    assert list((tmp_path / "cache").glob("features/images/*.pt"))


def test_another_tokenizer_or_activation_over_equal_weights_is_evaluated_afresh(tiny_model_dir, world, tmp_path,
                                                                                monkeypatch):
    """Equal weights are not the same model: neither resume nor the feature cache may serve the numbers of another
    tokenizer, or of the same state dict under QuickGELU (the OpenAI-weights pitfall)."""
    from evalsuite.models.tiny import TINY_MODEL_CFG

    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    model, preprocess, tokenizer = open_clip_model(tiny_model_dir)
    canonical = open_clip.SimpleTokenizer(clean="canonicalize")  # another model's tokenizer settings
    quick = open_clip.CLIP(**TINY_MODEL_CFG, quick_gelu=True).eval()
    quick.load_state_dict(model.state_dict())
    shared = dict(output_dir=tmp_path / "out", preprocess=preprocess, cache_features=True, **world)

    def predictions(results):
        return (results.folder / "toy10.predictions.csv").read_text()

    first = evalsuite.evaluate(model, "toy10", tokenizer=tokenizer, **shared)
    for case, (other, tok) in enumerate(((model, canonical), (quick, tokenizer))):
        got = evalsuite.evaluate(other, "toy10", tokenizer=tok, **shared)  # same folder, same feature cache
        truth = evalsuite.evaluate(other, "toy10", tokenizer=tok, output_dir=tmp_path / f"truth{case}",
                                   preprocess=preprocess, **world)  # no feature cache
        assert got.done == ["toy10"] and got.model_fingerprint != first.model_fingerprint
        assert predictions(got) == predictions(truth) != predictions(first)


def test_a_model_breaking_the_feature_contract_fails_with_the_contract_named(world, tmp_path, caplog):
    class Mismatched(torch.nn.Module):  # image features of 8 dimensions, text features of 16
        def __init__(self):
            super().__init__()
            self.image, self.text = torch.nn.Linear(3 * 32 * 32, 8), torch.nn.Embedding(49408, 16)

        def encode_image(self, pixels):
            return self.image(pixels.flatten(1))

        def encode_text(self, tokens):
            return self.text(tokens).mean(1)

    with pytest.raises(UserInputError, match="failed: toy10"):
        evalsuite.evaluate(Mismatched(), "toy10", output_dir=tmp_path / "out", tokenizer=open_clip.SimpleTokenizer(),
                           preprocess=evalsuite.Preprocessing(32, (0.5,) * 3, (0.5,) * 3), **world)
    assert ("model Mismatched: the image tower (encode_image) returns 8 features per input and the text tower"
            " (encode_text) 16; zero-shot scores compare") in caplog.text
