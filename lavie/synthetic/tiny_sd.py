"""A tiny, randomly initialised Stable Diffusion folder in the diffusers layout.

``write_tiny_sd(folder)`` writes what the trainer reads from a real SD 1.x folder, at toy size::

    model_index.json
    unet/          UNet2DConditionModel  (config.json + diffusion_pytorch_model.safetensors)
    vae/           AutoencoderKL         (config.json + diffusion_pytorch_model.safetensors)
    text_encoder/  CLIPTextModel         (config.json + model.safetensors)
    tokenizer/     CLIPTokenizer         (vocab.json + merges.txt, byte-level, tiny vocab)
    scheduler/     DDPMScheduler         (scheduler_config.json, SD 1.x's schedule)

Used by the tests, the benchmarks and ``make demo`` (no model hub is needed anywhere). The same
seed always writes the same weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

#: UNet: two resolution levels, cross-attention in the first, 2 heads of width 16.
TINY_UNET_CONFIG: dict[str, Any] = {
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "cross_attention_dim": 32,
    "attention_head_dim": 16,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "in_channels": 4,
    "out_channels": 4,
    "sample_size": 8,
}

#: VAE: three levels, so pixels are downsampled 4x (SD's is 8x); 4 latent channels like SD.
TINY_VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": [8, 16, 16],
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 32,
    "scaling_factor": 0.18215,
}

#: Text encoder: 2 layers of width 32 (the UNet's cross_attention_dim), SD's 77 positions.
TINY_TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 32,
}

#: Stable Diffusion 1.x's DDPM training schedule.
SD_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

#: A few merges so that common words become single tokens; everything else splits into bytes.
_WORDS = (
    "a", "the", "of", "in", "on", "and", "with", "at", "video", "clip", "image", "photo", "cat",
    "dog", "car", "sea", "sky", "city", "road", "wave", "night", "red", "blue", "over", "across",
)  # fmt: skip


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable unicode character map."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def tiny_clip_vocab() -> tuple[dict[str, int], list[str]]:
    """A byte-level CLIP vocabulary (every byte, alone and word-final) plus the merges that build
    the words of ``_WORDS``; ``<|startoftext|>`` and ``<|endoftext|>`` last, as in CLIP."""
    base = list(bytes_to_unicode().values())
    tokens = base + [c + "</w>" for c in base]
    merges: list[str] = []
    known = set(tokens)
    for word in _WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            merged = parts[0] + parts[1]
            rule = f"{parts[0]} {parts[1]}"
            if merged not in known:
                known.add(merged)
                tokens.append(merged)
                merges.append(rule)
            parts = [merged, *parts[2:]]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def _save_quietly(model: Any, folder: Path) -> None:
    """``save_pretrained`` without transformers' one-shard "Writing model shards" progress bar."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder, safe_serialization=True)
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def write_tiny_sd(folder: str | Path, seed: int = 0, *, unet_config: dict[str, Any] | None = None) -> Path:
    """Write a tiny random SD folder at ``folder`` (created; existing files are overwritten)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        UNet2DConditionModel(**(unet_config or TINY_UNET_CONFIG)).save_pretrained(folder / "unet")
        AutoencoderKL(**TINY_VAE_CONFIG).save_pretrained(folder / "vae")
        write_tiny_clip_text(folder)
    finally:
        torch.random.set_rng_state(generator_state)
    DDPMScheduler(**SD_SCHEDULER_CONFIG).save_pretrained(folder / "scheduler")
    write_model_index(folder, "StableDiffusionPipeline", {
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDPMScheduler"],
    })  # fmt: skip
    return folder


def write_model_index(folder: Path, class_name: str, parts: dict[str, Any]) -> None:
    """A diffusers pipeline's ``model_index.json``: the class, the parts every SD-family folder has
    (UNet, VAE, CLIP text encoder and tokenizer) and ``parts``."""
    import diffusers

    common = {
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    index = {"_class_name": class_name, "_diffusers_version": diffusers.__version__, **dict(sorted({**common, **parts}.items()))}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def write_tiny_clip_text(folder: Path, hidden_size: int = TINY_TEXT_CONFIG["hidden_size"]) -> None:
    """``folder/text_encoder`` (a tiny CLIPTextModel of width ``hidden_size``, drawn from torch's
    global generator: the caller seeds it) and ``folder/tokenizer`` (the byte-level tiny vocabulary)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab, merges = tiny_clip_vocab()
    text_config = CLIPTextConfig(
        vocab_size=len(vocab),
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
        **{**TINY_TEXT_CONFIG, "hidden_size": hidden_size, "projection_dim": hidden_size},
    )
    _save_quietly(CLIPTextModel(text_config), folder / "text_encoder")
    tokenizer_dir = folder / "tokenizer"
    tokenizer_dir.mkdir(exist_ok=True)
    (tokenizer_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (tokenizer_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (tokenizer_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": TINY_TEXT_CONFIG["max_position_embeddings"],
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "do_lower_case": True,
            },
            indent=2,
        )
    )
    CLIPTokenizer.from_pretrained(tokenizer_dir)  # fail here, not in a worker

