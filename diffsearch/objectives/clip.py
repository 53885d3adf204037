"""CLIP objective: spherical CLIP loss between generated images and the user's prompt (DPO-Diff).

    L(a, b) = 2 * arcsin(|a/|a| - b/|b|| / 2)^2      (= theta^2 / 2 for the angle theta between a and b)

Lower is better for enhancement; the attack maximises it. CLIP score (100 * cosine, clipped at 0) is
reported too. Differentiable in the image: preprocessing (resize, normalise) is done with torch ops, so
the shortcut gradient reaches the prompt.

``--clip`` specs:
  ``ViT-B-32:openai``           open_clip model name and pretrained tag (the reference's CLIP ViT-B/32)
  ``ViT-B-32:/path/weights.pt`` open_clip model name and a local weights file
  ``/path/to/dir``              a transformers ``CLIPModel`` saved with ``save_pretrained`` (without
                                tokenizer files: CLIP's own BPE tokenizer)
  ``tiny``                      a randomly initialised transformers CLIP with the real tokenizer (tests)
  ``fashion``                   the judge CLIP trained on Fashion-MNIST that ships with diffsearch (a
                                transformers directory; for ``--model fashion``)

``ClipReward`` is this objective as ``--reward clip`` (objectives/rewards.py): loss = the spherical loss,
score = the CLIP score.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from diffsearch.errors import UsageError
from diffsearch.objectives.reward_base import Reward, RewardOptions

DEFAULT_CLIP = "ViT-B-32:openai"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def spherical_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise spherical distance loss between embeddings a (N x D) and b (N x D or 1 x D)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    return (a - b).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)


def clip_score(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (100 * F.cosine_similarity(a, b, dim=-1)).clamp(min=0)


def preprocess_images(images: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """[0, 1] images B x 3 x H x W -> a CLIP image tower's input with torch ops (so gradients pass):
    resize the short side to ``size`` (bicubic), centre crop ``size`` x ``size``, normalise."""
    h, w = images.shape[-2:]
    scale = size / min(h, w)
    resized = (max(size, round(h * scale)), max(size, round(w * scale)))
    images = F.interpolate(images.float(), size=resized, mode="bicubic", align_corners=False, antialias=scale < 1)
    top, left = (resized[0] - size) // 2, (resized[1] - size) // 2
    images = images[..., top : top + size, left : left + size]
    mean = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


class ClipObjective:
    """Image and text embeddings from one CLIP model, whichever library it comes from."""

    def __init__(self, spec: str = DEFAULT_CLIP, device: str = "cpu", seed: int = 0):
        self.spec, self.device = spec, device
        self.mean, self.std = OPENAI_MEAN, OPENAI_STD
        if spec == "fashion":
            from diffsearch.backends.fashion_sd import JUDGE_CLIP_DIR

            spec = str(JUDGE_CLIP_DIR)
        if spec == "tiny":
            self._load_tiny(seed)
        elif Path(spec).expanduser().is_dir():
            self._load_transformers(Path(spec).expanduser())
        elif ":" in spec:
            self._load_open_clip(*spec.split(":", 1))
        else:
            raise UsageError(
                f"--clip {spec!r}: give MODEL:TAG (open_clip, e.g. ViT-B-32:openai), "
                "MODEL:/path/weights.pt, a transformers CLIP directory, 'tiny' or 'fashion'"
            )
        self.model.to(device).eval().requires_grad_(False)

    # ---- loading ------------------------------------------------------------------------------------
    def _load_tiny(self, seed: int) -> None:
        from transformers import CLIPConfig, CLIPModel

        from diffsearch.backends.tiny_sd import clip_tokenizer, tiny_text_config

        torch.manual_seed(seed + 1)
        text = tiny_text_config(32).to_dict()
        vision = dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
        self.model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32))
        self.tokenizer, self.kind, self.image_size = clip_tokenizer(), "transformers", 32

    def _load_transformers(self, path: Path) -> None:
        from transformers import CLIPModel, CLIPTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a per-tensor bar for a one-second load
        try:
            self.model = CLIPModel.from_pretrained(str(path), local_files_only=True)
            if any((path / name).is_file() for name in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
                self.tokenizer = CLIPTokenizer.from_pretrained(str(path), local_files_only=True)
            else:  # no tokenizer saved: CLIP's own (every CLIP uses the same BPE vocabulary)
                from diffsearch.backends.tiny_sd import clip_tokenizer

                self.tokenizer = clip_tokenizer()
        except Exception as exc:
            raise UsageError(
                f"--clip {path}: not a transformers CLIPModel directory with its tokenizer "
                f"({str(exc).splitlines()[0][:160]})"
            ) from None
        self.kind, self.image_size = "transformers", self.model.config.vision_config.image_size

    def _load_open_clip(self, name: str, pretrained: str) -> None:
        import open_clip

        logging.disable(logging.ERROR)  # open_clip logs the failure itself; we say it in one line
        try:
            self.model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=str(Path(pretrained).expanduser()) if "/" in pretrained else pretrained
            )
        except Exception as exc:  # unknown name, no network, missing file
            raise UsageError(
                f"cannot load CLIP {name}:{pretrained} ({str(exc).splitlines()[0][:160]}); "
                "download the weights where there is internet and pass MODEL:/path/weights.pt, "
                "or a transformers CLIP directory, or --clip tiny"
            ) from None
        finally:
            logging.disable(logging.NOTSET)
        self.tokenizer = open_clip.get_tokenizer(name)
        self.kind = "open_clip"
        size = self.model.visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else size
        normalize = [t for t in getattr(preprocess, "transforms", []) if hasattr(t, "mean")]
        if normalize:
            self.mean, self.std = tuple(normalize[0].mean), tuple(normalize[0].std)

    # ---- embeddings ---------------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images B x 3 x H x W -> CLIP input: resize the short side, centre crop, normalise."""
        return preprocess_images(images, self.image_size, self.mean, self.std)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        pixels = self.preprocess(images.to(self.device))
        if self.kind == "open_clip":
            return self.model.encode_image(pixels)
        return embedding_tensor(self.model.get_image_features(pixel_values=pixels))

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        if self.kind == "open_clip":
            return self.model.encode_text(self.tokenizer(texts).to(self.device))
        ids = self.tokenizer(
            texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)
        return embedding_tensor(self.model.get_text_features(input_ids=ids))

    def loss(self, images: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Spherical loss of each image against the text (one value per image)."""
        return spherical_loss(self.image_features(images), text_features)

    def score(self, images: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return clip_score(self.image_features(images), text_features)


def embedding_tensor(output) -> torch.Tensor:
    # transformers 5 returns a model output object from get_*_features; older versions a tensor
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output if getattr(output, "pooler_output", None) is not None else output[0]


class ClipReward(Reward):
    """``--reward clip``: DPO-Diff's objective (Wang et al., ICML 2024). The loss is the spherical CLIP
    loss itself (lower is better; it is not minus the score); the score is the CLIP score, 100 * cosine."""

    loss_formula = "spherical CLIP loss 2*arcsin(|a/|a|-b/|b||/2)^2"
    score_name, loss_name = "CLIP score", "spherical CLIP loss"

    def __init__(self, clip: ClipObjective):
        super().__init__()
        self.clip, self.name = clip, "clip"

    def text_features(self, prompt: str) -> torch.Tensor:
        return self.clip.text_features([prompt])

    def score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        return clip_score(self.clip.image_features(images), self.cached_text(prompt))

    def loss(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        return self.clip.loss(images, self.cached_text(prompt))

    @torch.no_grad()
    def loss_and_score(self, images: torch.Tensor, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        features, text = self.clip.image_features(images), self.cached_text(prompt)  # one image pass for both
        return spherical_loss(features, text), clip_score(features, text)


# ``--reward clip`` (objectives/rewards.py's registry): nothing to check before the model loads
def check(options: RewardOptions) -> None:
    pass


def load(options: RewardOptions, device: str, seed: int) -> Reward:
    return ClipReward(ClipObjective(options.clip or DEFAULT_CLIP, device, seed))
