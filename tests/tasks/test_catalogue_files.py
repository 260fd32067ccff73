"""Every task YAML, prompt file, suite and model card in the repo loads and resolves."""

import pytest

from evalsuite.catalog import Catalog
from evalsuite.models.card import all_cards
from evalsuite.resources import builtin_root
from evalsuite.tasks import build_task
from evalsuite.yamlio import load_yaml

CATALOG = Catalog.load()


@pytest.mark.parametrize("name", sorted(CATALOG.tasks))
def test_task_builds(name):
    task = build_task(CATALOG.tasks[name])
    assert task.spec.expected_num_samples, "state expected_num_samples (and why it differs from the paper in notes)"
    if hasattr(task, "bank"):
        assert len(task.bank.classnames) == task.spec.num_classes


@pytest.mark.parametrize("name", sorted(CATALOG.suites))
def test_suite_resolves(name):
    assert CATALOG.suite_members(name)


@pytest.mark.parametrize("path", sorted((builtin_root() / "prompts").rglob("*.yaml")), ids=lambda p: p.name)
def test_prompt_files_cite_a_source(path):
    assert str(load_yaml(path).get("source", "")).strip()


def test_model_cards_load():
    cards = all_cards()
    assert "demo-clip" in cards


EVA_MODELS = ["EVA01-CLIP-g-14", "EVA01-CLIP-g-14-plus", "EVA02-CLIP-B-16", "EVA02-CLIP-L-14", "EVA02-CLIP-L-14-336",
              "EVA02-CLIP-E-14", "EVA02-CLIP-E-14-plus", "EVA-CLIP-8B", "EVA-CLIP-8B-448", "EVA-CLIP-18B"]


def test_all_ten_eva_cards_exist():
    assert set(EVA_MODELS) <= set(all_cards())


@pytest.mark.parametrize("name", sorted(all_cards()))
def test_card_is_buildable_offline(name):
    """open_clip cards name a known architecture and tag; eva_native cards carry a config that builds (on meta)."""
    import open_clip

    from evalsuite.models.eva_native import EvaClipConfig, build_eva_clip

    card = all_cards()[name]
    assert card.preprocess is not None and card.image_size
    if card.adapter == "eva_native":
        model = build_eva_clip(EvaClipConfig.from_dict(card.config, card.file), meta=True)
        params = sum(p.numel() for p in model.parameters())
        assert abs(params / 1e6 - card.params_millions) / card.params_millions < 0.01
        assert model.visual.patch_embed.img_size[0] == card.image_size
    elif card.adapter == "open_clip":
        tags = [w.ref for w in card.weights if w.kind == "open_clip_tag"]
        if tags:
            assert card.architecture in open_clip.list_models()
            assert tags[0] in open_clip.list_pretrained_tags_by_model(card.architecture)
