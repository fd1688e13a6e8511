"""Chapter 05: chapter 05's recipe on all verifiable families, as a transformers GPT-2 directory.

``course_sft_dir()`` fine-tunes the course TinyGPT once per profile with chapter 05's full fine-tuning
recipe (``train.experiment.cached_train``, ``template="chat"``: the course tokenizer's compact chat
template) on the 13 verifiable families in their training phrasings, and exports it as a directory
that ``load_model(dir)``, ``instructlib serve --model DIR`` and peft adapters all accept. Chapter 07's
checker filter asks this model whether a paraphrase still gets the right answer.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

from ..config import Profile, as_profile, cache_dir

RECIPE_VERSION = 1


@dataclass(frozen=True)
class SFTRecipe:
    """Sizes of the instruction tuning (chapter 05's full fine-tuning recipe)."""

    n_train: int            # training instances per task family (training phrasings)
    steps: int
    batch_size: int
    lr: float = 4e-3
    weight_decay: float = 0.01
    seed: int = 0


def sft_recipe(profile: Union[None, str, Profile] = None) -> SFTRecipe:
    """The recipe for a profile: seconds in ci, a few minutes on 2 CPU cores in cpu."""
    p = as_profile(profile)
    return p.pick(ci=SFTRecipe(n_train=3, steps=6, batch_size=8),
                  cpu=SFTRecipe(n_train=200, steps=1000, batch_size=32),
                  gpu=SFTRecipe(n_train=400, steps=3000, batch_size=64))


def course_sft_dir(profile: Union[None, str, Profile] = None, progress: bool = True) -> Path:
    """Directory of the instruction-tuned TinyGPT (GPT-2 format + tokenizer), built on first use."""
    from ..files import build_once
    from ..models.course import course_model_dir

    p = as_profile(profile)
    recipe = sft_recipe(p)
    base_dir = course_model_dir(p, progress=progress)
    key = hashlib.sha256(json.dumps([RECIPE_VERSION, asdict(recipe), base_dir.name]).encode()).hexdigest()[:10]

    def build(out: Path) -> None:
        import copy

        from ..data.collate import DataCollatorForInstructions, encode_dataset
        from ..data.verifiable import make_records
        from ..models import load_model, load_tokenizer
        from .experiment import cached_train
        from .loop import TrainConfig

        tokenizer, base = load_tokenizer("tinygpt"), load_model("tinygpt")
        block = base.config.block_size
        train_data, _ = encode_dataset(make_records("train", recipe.n_train, seed=recipe.seed), tokenizer, block, "chat")
        val_data, _ = encode_dataset(make_records("validation", max(1, recipe.n_train // 6), seed=recipe.seed),
                                     tokenizer, block, "chat")
        config = TrainConfig(max_steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr,
                             warmup_steps=max(1, recipe.steps // 20), min_lr_ratio=0.1,
                             weight_decay=recipe.weight_decay, eval_every=max(1, recipe.steps // 10), patience=4,
                             group_by_length=True, seed=recipe.seed, progress=progress)
        # the run's name predates this module; kept so that caches built under it stay valid
        run = cached_train("deploy-sft", lambda: copy.deepcopy(base), train_data, DataCollatorForInstructions(tokenizer),
                           config, eval_data=val_data, key={"base": base_dir.name}, device="cpu")
        hf = run.model.cpu().eval().to_hf(eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
                                          pad_token_id=tokenizer.pad_token_id)
        hf.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "sft.json").write_text(json.dumps({"recipe": asdict(recipe), "base": base_dir.name,
                                                  "steps": run.info["step"], "best_val_loss": run.info["best_val_loss"]},
                                                 indent=1))

    return build_once(cache_dir() / f"course-sft-tinygpt-{p.name}-{key}", build)


def load_course_sft(profile: Union[None, str, Profile] = None, progress: bool = True):
    """(model, tokenizer) of ``course_sft_dir``: a transformers GPT2LMHeadModel in eval mode."""
    from ..models import load_model, load_tokenizer

    path = str(course_sft_dir(profile, progress))
    return load_model(path), load_tokenizer(path)


def course_sft_info(profile: Optional[Union[str, Profile]] = None) -> dict:
    """What the build recorded (recipe, steps, best validation loss)."""
    return json.loads((course_sft_dir(profile) / "sft.json").read_text())
