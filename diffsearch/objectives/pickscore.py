"""``--reward pickscore``: PickScore (Kirstain et al., NeurIPS 2023), a CLIP ViT-H-14 fine-tuned on
Pick-a-Pic human preferences.

    score = logit_scale.exp() * cosine(image embedding, prompt embedding)     (about 15..25)

as in the authors' inference code; the search minimises -score. The model is a transformers
``CLIPModel`` with its ``CLIPProcessor`` (tokenizer and image settings) in the same directory, e.g.::

    from transformers import AutoProcessor, CLIPModel
    CLIPModel.from_pretrained("yuvalkirstain/PickScore_v1").save_pretrained("pickscore")
    AutoProcessor.from_pretrained("laion/CLIP-ViT-H-14-laion2B-s32B-b79K").save_pretrained("pickscore")

``--reward-model`` takes that directory, or a hub id where a hub is reachable (default
``yuvalkirstain/PickScore_v1``). Images are resized and normalised with torch ops, so the shortcut
gradient (gpo, gpo+es) reaches the prompt.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from diffsearch.errors import UsageError
from diffsearch.objectives.clip import embedding_tensor, preprocess_images
from diffsearch.objectives.reward_base import Reward, RewardOptions

PICKSCORE_HUB_ID = "yuvalkirstain/PickScore_v1"  # the published checkpoint (where a hub is reachable)

PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def local_path(source: str) -> Path | None:
    """The directory ``source`` names, or None for a hub id (``owner/name`` that is not a local path)."""
    path = Path(source).expanduser()
    if path.exists() or source.startswith(("/", ".", "~")) or source.count("/") != 1:
        return path
    return None


def check_source(source: str) -> None:
    path = local_path(source)
    if path is None:
        return  # a hub id: loading says whether the hub answers
    if not path.is_dir():
        raise UsageError(
            f"--reward-model {source}: no such directory (PickScore needs a transformers "
            "CLIPModel + CLIPProcessor directory, or a hub id)"
        )
    if not (path / "config.json").is_file():
        raise UsageError(f"--reward-model {source}: no config.json (save the model with CLIPModel.save_pretrained)")
    if not any((path / name).is_file() for name in PROCESSOR_FILES):
        raise UsageError(
            f"--reward-model {source}: no preprocessor_config.json; save the processor beside the "
            "model: AutoProcessor.from_pretrained('laion/CLIP-ViT-H-14-laion2B-s32B-b79K')"
            f".save_pretrained('{source}')"
        )


class PickScore(Reward):
    score_name = "PickScore"
    loss_formula = "-PickScore (logit_scale * cosine of CLIP embeddings)"

    def __init__(self, source: str, device: str = "cpu"):
        super().__init__()
        from transformers import AutoProcessor, CLIPModel

        self.name, self.device = "pickscore", device
        path = local_path(source)
        where, offline = (str(path), {"local_files_only": True}) if path is not None else (source, {})
        try:
            self.model = CLIPModel.from_pretrained(where, **offline)
            processor = AutoProcessor.from_pretrained(where, **offline)
        except Exception as exc:  # not a CLIP directory, no hub, no such id
            raise UsageError(
                f"--reward-model {source}: cannot load PickScore as a transformers CLIPModel + "
                f"CLIPProcessor ({str(exc).splitlines()[0][:160]})"
            ) from None
        self.model.to(device).eval().requires_grad_(False)
        self.tokenizer, images = processor.tokenizer, processor.image_processor
        self.size = int(images.crop_size["height"])
        self.mean, self.std = tuple(images.image_mean), tuple(images.image_std)

    def text_features(self, prompt: str) -> torch.Tensor:
        tokens = self.tokenizer([prompt], padding=True, truncation=True, max_length=77, return_tensors="pt")
        return F.normalize(embedding_tensor(self.model.get_text_features(**tokens.to(self.device))), dim=-1)

    def score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        pixels = preprocess_images(images.to(self.device), self.size, self.mean, self.std)
        embedded = F.normalize(embedding_tensor(self.model.get_image_features(pixel_values=pixels)), dim=-1)
        return self.model.logit_scale.exp() * (embedded @ self.cached_text(prompt).T).squeeze(-1)


# ``--reward pickscore`` (objectives/rewards.py's registry)
def check(options: RewardOptions) -> None:
    check_source(options.model or PICKSCORE_HUB_ID)


def load(options: RewardOptions, device: str, seed: int) -> Reward:
    return PickScore(options.model or PICKSCORE_HUB_ID, device)
