"""``--model tiny-sdxl | tiny-sd3 | tiny-flux``: small randomly initialised SDXL, SD3 and FLUX pipelines.

Each is built from its family's real diffusers / transformers classes and configs (two CLIP encoders and a
UNet with text-time conditioning for SDXL; CLIP-L, CLIP-G, T5 and an MMDiT transformer for SD3; CLIP, T5
and a guidance-distilled FLUX transformer for FLUX) at tiny widths, the sizes of diffusers' own pipeline
tests. The CLIP tokenizers are the real one (tiny_sd.py; SDXL's second pads with "!" as SDXL's does).

T5's tokenizer cannot be downloaded here and ``sentencepiece`` is not installed, so ``t5_tokenizer``
builds a small one offline with the ``tokenizers`` library: a sentencepiece-style Unigram model
(Metaspace pre-tokenizer, "▁" word marker, T5's special tokens <pad> = 0, </s> = 1, <unk> = 2, eos
appended) whose pieces are "▁" + the 8,000 most frequent whole words of CLIP's vocabulary (CLIP's merge
order ranks them), plus single characters with and without the marker, scored by rank; wrapped as a
transformers ``T5TokenizerFast`` and saved as tokenizer.json with the pipeline. Words outside its
vocabulary split into characters, as unknown words split into pieces in the real T5 tokenizer.
"""

from __future__ import annotations

import math
import string
from functools import lru_cache

import torch

from diffsearch.backends.tiny_sd import clip_tokenizer, tiny_text_config

T5_WORDS = 8000


@lru_cache(maxsize=1)
def t5_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    vocab = clip_tokenizer().get_vocab()
    words = [
        w[:-4]
        for w, _ in sorted(vocab.items(), key=lambda kv: kv[1])
        if w.endswith("</w>") and w[:-4].isalpha() and len(w) > 5
    ][:T5_WORDS]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + w, -math.log(rank + 2)) for rank, w in enumerate(words)]
    chars = string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation
    pieces += [("▁", -12.0)] + [
        (p, -15.0) for c in chars for p in ("▁" + c, c) if "▁" + c != p or c.lower() not in words
    ]
    seen, unique = set(), []
    for piece, score in pieces:
        if piece not in seen:
            seen.add(piece)
            unique.append((piece, score))
    tok = Tokenizer(models.Unigram(unique, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0, model_max_length=512
    )


def _clip_tokenizer_2():
    """SDXL's and SD3's second tokenizer pads with "!" (id 0), the first with <|endoftext|>."""
    import copy

    tok = copy.deepcopy(clip_tokenizer())
    tok.pad_token = "!"
    return tok


def _clip(hidden: int, projection: bool, layers: int = 2):
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    config = tiny_text_config(hidden, layers)
    config.projection_dim = hidden
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _t5(d_model: int):
    from transformers import T5Config, T5EncoderModel

    tok = t5_tokenizer()
    return T5EncoderModel(
        T5Config(
            vocab_size=len(tok),
            d_model=d_model,
            d_ff=2 * d_model,
            d_kv=16,
            num_layers=2,
            num_heads=2,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=0,
            is_encoder_decoder=False,
            use_cache=False,
        )
    )


def _vae(latent_channels: int, flow: bool, size: int = 16):
    from diffusers import AutoencoderKL

    extra = (
        dict(shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False)
        if flow
        else {}
    )
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=size,
        **extra,
    )


def tiny_sdxl_pipeline(seed: int = 0):
    """SDXL's structure (diffusers' test sizes): 16 x 16 images, two CLIPs of width 32, text-time UNet."""
    from diffusers import DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=8,
    )  # 80 = 6 time ids x 8 + pooled 32; 64 = 32 + 32
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=_vae(4, False),
        text_encoder=_clip(32, False),
        text_encoder_2=_clip(32, True),
        tokenizer=clip_tokenizer(),
        tokenizer_2=_clip_tokenizer_2(),
        unet=unet,
        scheduler=scheduler,
    )


def tiny_sd3_pipeline(seed: int = 0, t5: bool = True):
    """SD3's structure: CLIP-L and CLIP-G (width 32 each), T5 (width 64), an MMDiT of one layer, 16 x 16 images."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=1,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=64,
        pooled_projection_dim=64,
        out_channels=4,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(4, True),
        text_encoder=_clip(32, True),
        tokenizer=clip_tokenizer(),
        text_encoder_2=_clip(32, True),
        tokenizer_2=_clip_tokenizer_2(),
        text_encoder_3=_t5(64) if t5 else None,
        tokenizer_3=t5_tokenizer() if t5 else None,
    )


def tiny_flux_pipeline(seed: int = 0, guidance_embeds: bool = True):
    """FLUX.1's structure (dev: distilled guidance embedding; ``guidance_embeds=False``: schnell): CLIP (32),
    T5 (64), a transformer with one double and one single block. Pass ``size=16`` to the backend: FluxPipeline
    fixes its default size at 128 latent pixels."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=64,
        pooled_projection_dim=32,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=[4, 4, 8],
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return FluxPipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=_vae(4, True),
        text_encoder=_clip(32, False),
        tokenizer=clip_tokenizer(),
        text_encoder_2=_t5(64),
        tokenizer_2=t5_tokenizer(),
    )


TINY_PIPELINES = {"tiny-sdxl": tiny_sdxl_pipeline, "tiny-sd3": tiny_sd3_pipeline, "tiny-flux": tiny_flux_pipeline}


# ---- real architecture sizes, random weights (benchmarks: memory and time of the shortcut gradient) -------


def _encoder_at_width(hidden: int, projection: bool, heads: int):
    """A CLIP text encoder of the real width with one layer: the benchmarks take gradients w.r.t. the encoders'
    outputs, so their depth does not enter the measured memory (their weights would only add constant bytes)."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    config = tiny_text_config(hidden, 1)
    config.intermediate_size, config.num_attention_heads, config.projection_dim = 4 * hidden, heads, hidden
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _t5_at_width(d_model: int):
    from transformers import T5Config, T5EncoderModel

    tok = t5_tokenizer()
    return T5EncoderModel(
        T5Config(
            vocab_size=len(tok),
            d_model=d_model,
            d_ff=d_model,
            d_kv=64,
            num_layers=1,
            num_heads=d_model // 64,
            feed_forward_proj="gated-gelu",
            is_encoder_decoder=False,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
            use_cache=False,
        )
    )


def _real_vae(latent_channels: int, flow: bool):
    from diffusers import AutoencoderKL

    extra = (
        dict(
            shift_factor=0.0609 if latent_channels == 16 else 0.1159,
            use_quant_conv=False,
            use_post_quant_conv=False,
            scaling_factor=1.5035 if latent_channels == 16 else 0.3611,
        )
        if flow
        else {}
    )
    return AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=latent_channels,
        layers_per_block=2,
        sample_size=1024,
        **extra,
    )


def real_size_pipeline(family: str, seed: int = 0):
    """SDXL base (2.6B UNet), SD3-medium (2B MMDiT) or FLUX.1-dev (12B transformer) denoisers and VAEs at their
    published sizes with random weights; text encoders at the real output widths, one layer each."""
    import diffusers

    torch.manual_seed(seed)
    if family == "sdxl":
        unet = diffusers.UNet2DConditionModel(
            sample_size=128,
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
            cross_attention_dim=2048,
        )
        return diffusers.StableDiffusionXLPipeline(
            vae=_real_vae(4, False),
            text_encoder=_encoder_at_width(768, False, 12),
            text_encoder_2=_encoder_at_width(1280, True, 20),
            tokenizer=clip_tokenizer(),
            tokenizer_2=_clip_tokenizer_2(),
            unet=unet,
            scheduler=diffusers.EulerDiscreteScheduler(
                beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
            ),
        )
    if family == "sd3":
        transformer = diffusers.SD3Transformer2DModel(
            sample_size=128,
            patch_size=2,
            in_channels=16,
            num_layers=24,
            attention_head_dim=64,
            num_attention_heads=24,
            joint_attention_dim=4096,
            caption_projection_dim=1536,
            pooled_projection_dim=2048,
            out_channels=16,
            pos_embed_max_size=192,
        )
        return diffusers.StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=_real_vae(16, True),
            text_encoder=_encoder_at_width(768, True, 12),
            tokenizer=clip_tokenizer(),
            text_encoder_2=_encoder_at_width(1280, True, 20),
            tokenizer_2=_clip_tokenizer_2(),
            text_encoder_3=_t5_at_width(4096),
            tokenizer_3=t5_tokenizer(),
        )
    if family == "flux":
        transformer = diffusers.FluxTransformer2DModel(guidance_embeds=True)  # its defaults are FLUX.1's sizes
        scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
        return diffusers.FluxPipeline(
            transformer=transformer,
            scheduler=scheduler,
            vae=_real_vae(16, True),
            text_encoder=_encoder_at_width(768, False, 12),
            tokenizer=clip_tokenizer(),
            text_encoder_2=_t5_at_width(4096),
            tokenizer_2=t5_tokenizer(),
        )
    raise ValueError(f"unknown family {family!r}")
