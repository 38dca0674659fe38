"""CLIPSIM with the paper's architecture (open_clip ViT-B/32, random weights from a local file)
equals a hand-computed normalised dot product, averaged over frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.clipsim import load_clip


@pytest.fixture(scope="module")
def vit_b_32(tmp_path_factory) -> str:
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None, load_weights=False)
    path = tmp_path_factory.mktemp("vit-b-32") / "open_clip_vit_b_32.safetensors"
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(path))  # half: 300 MB, not 600
    return str(path)


def test_frame_similarities_are_normalised_dot_products(vit_b_32):
    import open_clip
    from PIL import Image
    from safetensors.torch import load_file

    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 256, (3, 40, 64, 3), dtype=np.uint8), rng.integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)]
    captions = ["a dog running on the beach", "a city at night"]
    scores = load_clip("ViT-B-32", vit_b_32).frame_similarities(videos, captions)

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None, load_weights=False)
    model.load_state_dict({k: v.float() for k, v in load_file(vit_b_32).items()})
    model.eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        for video, caption, got in zip(videos, captions, scores):
            image = model.encode_image(torch.stack([preprocess(Image.fromarray(f)) for f in video])).double().numpy()
            text = model.encode_text(tokenizer([caption]))[0].double().numpy()
            expected = [float(v @ text / (np.linalg.norm(v) * np.linalg.norm(text))) for v in image]
            assert got.shape == (len(video),)
            np.testing.assert_allclose(got, expected, atol=1e-5)
