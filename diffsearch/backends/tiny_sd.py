"""``--model tiny``: a small randomly initialised Stable Diffusion pipeline, and the real CLIP tokenizer.

No Stable Diffusion weights can be downloaded on the machines this project is built on, so tests and
demos use a pipeline with SD's architecture (CLIP text encoder, conditional UNet, KL VAE, DDIM) at a
tiny width. The tokenizer is the real one: CLIP's BPE vocabulary ships inside open_clip
(``bpe_simple_vocab_16e6.txt.gz``); we write it out as vocab.json + merges.txt, the files a
transformers ``CLIPTokenizer`` reads, so token ids match CLIP's and SD's.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

MAX_LENGTH = 77  # CLIP's context: bos + 75 tokens + eos


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2 / CLIP byte -> printable character table (the BPE works on these characters)
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_clip_tokenizer_files(directory: Path) -> Path:
    """vocab.json + merges.txt built from open_clip's BPE file (the same construction as open_clip's)."""
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return directory


@lru_cache(maxsize=1)
def clip_tokenizer():
    """The real CLIP tokenizer (49,408 ids, 77 positions, padded with <|endoftext|> as in SD v1)."""
    from transformers import CLIPTokenizer

    directory = Path(tempfile.gettempdir()) / f"diffsearch-clip-bpe-{os.getuid()}"
    if not (directory / "merges.txt").is_file():
        write_clip_tokenizer_files(directory)
    return CLIPTokenizer.from_pretrained(str(directory), model_max_length=MAX_LENGTH, pad_token="<|endoftext|>")


def tiny_text_config(hidden: int = 32, layers: int = 2):
    from transformers import CLIPTextConfig

    tok = clip_tokenizer()
    return CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        max_position_embeddings=MAX_LENGTH,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        hidden_act="quick_gelu",
    )


def tiny_pipeline(seed: int = 0, size: int = 16):
    """A randomly initialised StableDiffusionPipeline with SD v1's structure: images ``size`` x ``size``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)  # diffusers / transformers draw initial weights from the global generator
    text_dim = 32
    unet = UNet2DConditionModel(
        sample_size=size // 2,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=text_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=size,
    )
    text_encoder = CLIPTextModel(tiny_text_config(text_dim))
    # SD v1's scheduler settings (scaled-linear betas, no alpha set to one, offset 1)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sd_v1_size_pipeline(seed: int = 0):
    """Randomly initialised, exactly SD v1's sizes (860M UNet, 123M text encoder, 84M VAE): for benchmarks."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tok = clip_tokenizer()
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)  # SD v1 defaults
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=MAX_LENGTH,
            hidden_act="quick_gelu",
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
