"""A local transformers image-to-text model writes the captions, through the pipeline's actor pool."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as pads
import pytest
import torch

from curation.captioning import TransformersCaptioner
from curation.config import build_config
from curation.pipeline import CurationRequest, run_curation
from lavie.core.errors import UserError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def captioner_dir(tmp_path_factory):
    """A tiny ViT→GPT-2 captioner whose decoder is rigged to always say 'cat'."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        PreTrainedTokenizerFast,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    words = ["<pad>", "<s>", "</s>", "<unk>", "a", "cat", "dog", "on", "grass"]
    vocab = {w: i for i, w in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    encoder = ViTConfig(image_size=32, patch_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    decoder = GPT2Config(vocab_size=len(vocab), n_positions=32, n_embd=32, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 1, 0, 2
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(config=config)
    with torch.no_grad():
        head = model.decoder.lm_head.weight  # tied to the token embeddings
        model.decoder.transformer.ln_f.weight.zero_()
        model.decoder.transformer.ln_f.bias.copy_(head[vocab["cat"]] * 10)
    path = tmp_path_factory.mktemp("captioner")
    model.save_pretrained(path)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_captioner_replaces_metadata_captions(ray_cluster, corpus, captioner_dir, tmp_path):
    config = build_config({"captioner": {"model": str(captioner_dir), "mode": "replace", "max_new_tokens": 4}})
    request = CurationRequest(inputs=(str(corpus.folder / "city.mp4"), str(corpus.folder / "nocaption.mp4")),
                              out=str(tmp_path / "out"), metadata=str(corpus.metadata), config=config)
    record = run_curation(request)
    clips = pads.dataset(tmp_path / "out" / "clips").to_table().to_pylist()
    # nocaption.mp4 had no caption in the metadata; the captioner's caption lets it through.
    assert record["counts"]["clips_kept"] == len(clips) == 4
    assert {c["caption"] for c in clips} == {"cat cat cat cat"}
    assert {c["caption_words"] for c in clips} == {4}


def test_not_a_model_folder_is_one_line(tmp_path):
    with pytest.raises(UserError, match="not a transformers model folder"):
        TransformersCaptioner(str(tmp_path))


def test_captioner_interface(captioner_dir):
    captions = TransformersCaptioner(str(captioner_dir), max_new_tokens=2).caption([np.zeros((64, 64, 3), np.uint8)])
    assert captions == ["cat cat"]
