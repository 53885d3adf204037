"""``--reward hpsv2``: Human Preference Score v2 / v2.1 (Wu et al., 2023), an open_clip ViT-H-14
fine-tuned on HPD v2 human preferences.

    score = 100 * cosine(image embedding, prompt embedding)     (about 20..35; the HPS v2 tables' scale)

The authors' code scores the cosine of the normalised open_clip embeddings and reports it times 100;
the search minimises -score. The weights are the authors' checkpoint file (``HPS_v2_compressed.pt`` or
``HPS_v2.1_compressed.pt`` from the ``xswu/HPSv2`` hub repository), a state dict stored under
``"state_dict"`` or at the top level, loaded into ``open_clip.create_model(--reward-arch)`` (default
``ViT-H-14``; a model-config JSON file path registers and names its own architecture). No download:
the architecture is built empty and filled from the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from diffsearch.errors import UsageError
from diffsearch.objectives.clip import preprocess_images
from diffsearch.objectives.reward_base import Reward, RewardOptions

HPSV2_ARCH = "ViT-H-14"  # the published checkpoints' open_clip architecture


def check_checkpoint(checkpoint: str | None, arch: str) -> None:
    if checkpoint is None:
        raise UsageError(
            "--reward hpsv2 needs --reward-model FILE: the HPSv2 checkpoint "
            "(HPS_v2.1_compressed.pt from the xswu/HPSv2 hub repository)"
        )
    if not Path(checkpoint).expanduser().is_file():
        raise UsageError(f"--reward-model {checkpoint}: no such checkpoint file")
    architecture_name(arch)


def architecture_name(arch: str) -> str:
    """The open_clip model name; a ``.json`` model config is registered under its file name first."""
    import open_clip

    if arch.endswith(".json"):
        path = Path(arch).expanduser()
        if not path.is_file():
            raise UsageError(f"--reward-arch {arch}: no such open_clip model-config file")
        open_clip.add_model_config(path)
        return path.stem
    if arch not in open_clip.list_models():
        raise UsageError(
            f"--reward-arch {arch!r} is not an open_clip architecture (HPSv2: ViT-H-14), nor a model-config .json file"
        )
    return arch


class HPSv2(Reward):
    score_name = "HPSv2"
    loss_formula = "-HPSv2 (100 * cosine of open_clip embeddings)"

    def __init__(self, checkpoint: Path, arch: str = "ViT-H-14", device: str = "cpu"):
        super().__init__()
        import open_clip

        self.name, self.device = "hpsv2", device
        name = architecture_name(arch)
        logging.disable(logging.ERROR)  # open_clip logs what it builds; a failure is said in one line below
        try:
            self.model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except Exception as exc:  # not a state dict, another architecture's weights
            raise UsageError(
                f"--reward-model {checkpoint}: not an open_clip {name} state dict ({str(exc).splitlines()[0][:160]})"
            ) from None
        finally:
            logging.disable(logging.NOTSET)
        self.model.to(device).eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(name)
        size = self.model.visual.image_size
        self.size = size[0] if isinstance(size, (tuple, list)) else size
        normalize = next(t for t in preprocess.transforms if hasattr(t, "mean"))  # open_clip's Normalize
        self.mean, self.std = tuple(normalize.mean), tuple(normalize.std)

    def text_features(self, prompt: str) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer([prompt]).to(self.device), normalize=True)

    def score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        pixels = preprocess_images(images.to(self.device), self.size, self.mean, self.std)
        embedded = self.model.encode_image(pixels, normalize=True)
        return 100 * (embedded @ self.cached_text(prompt).T).squeeze(-1)


# ``--reward hpsv2`` (objectives/rewards.py's registry)
def check(options: RewardOptions) -> None:
    check_checkpoint(options.model, options.arch or HPSV2_ARCH)


def load(options: RewardOptions, device: str, seed: int) -> Reward:
    return HPSv2(Path(str(options.model)).expanduser(), options.arch or HPSV2_ARCH, device)
