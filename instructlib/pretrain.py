"""Chapter 03: pretraining TinyGPT — the causal and masked LM objectives and a small training loop.

* Causal LM (GPT): position t predicts token t+1, so logits and labels are *shifted* by one
  before the cross-entropy; the last position has no target and the first token is never predicted.
* Masked LM (BERT): 15 % of the tokens are chosen; of those 80 % become ``<|mask|>``, 10 % a random
  token, 10 % stay; the model sees the whole sequence (no causal mask) and predicts the chosen
  tokens at their own positions (no shift).
* ``pretrain_config(profile)`` is the course model's recipe; ``instructlib.models.course`` builds
  and caches the course model with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .config import CPU_THREADS, Profile, as_profile, cpu_threads
from .corpus import load_corpus  # noqa: F401  (chapter 03's notebook reads the corpus through here)
from .lm.metrics import IGNORE_INDEX, causal_lm_loss, perplexity_from_loss
from .nn.gpt import GPTConfig, TinyGPT
from .nn.optim import History, make_optimizer, warmup_cosine

RECIPE_VERSION = "1"  # bump when the training code changes what a given config produces


# --- objectives ----------------------------------------------------------------------------------

def causal_lm_labels(input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Labels for causal LM: the inputs themselves, with padding set to -100 (the shift is in the loss)."""
    labels = input_ids.clone()
    if attention_mask is not None:
        labels[attention_mask == 0] = IGNORE_INDEX
    return labels


def mask_tokens(input_ids: torch.Tensor, mask_token_id: int, vocab_size: int, special_ids: Sequence[int] = (),
                mlm_probability: float = 0.15, generator: Optional[torch.Generator] = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: returns (corrupted inputs, labels with -100 except at the chosen positions).

    Each non-special token is chosen with ``mlm_probability``; a chosen token becomes the mask
    token (80 %), a random non-special token (10 %) or stays unchanged (10 %). The model must
    predict every chosen token, including the unchanged ones, so it cannot trust any input token.
    """
    if not 0 < mlm_probability < 1:
        raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
    device, shape = input_ids.device, input_ids.shape
    # random numbers come from a CPU generator: the same masks on every device
    rand = lambda: torch.rand(shape, generator=generator).to(device)  # noqa: E731
    special = torch.tensor(sorted(set(special_ids)) or [-1], device=device)
    maskable = ~torch.isin(input_ids, special)
    chosen = (rand() < mlm_probability) & maskable
    labels = input_ids.masked_fill(~chosen, IGNORE_INDEX)
    u = rand()
    to_mask, to_random = chosen & (u < 0.8), chosen & (u >= 0.8) & (u < 0.9)
    # random replacements are drawn among the ordinary tokens (specials never appear as noise)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_ids) | {mask_token_id}],
                            device=device)
    random_ids = ordinary[torch.randint(len(ordinary), shape, generator=generator).to(device)]
    inputs = input_ids.masked_fill(to_mask, mask_token_id)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy at the masked positions (labels != -100), no shift: predict the token in place."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)


# --- data ----------------------------------------------------------------------------------------

def encode_documents(tokenizer, docs: Sequence[str]) -> torch.Tensor:
    """One long 1-D token stream: every document followed by the end-of-text token."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    # the Rust tokenizer directly: batch-parallel, and no "longer than model_max_length" warning
    for enc in tokenizer.backend_tokenizer.encode_batch(list(docs), add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def random_windows(data: torch.Tensor, batch_size: int, block_size: int,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A (batch_size, block_size) batch of windows starting at random offsets of the stream ``data``."""
    if len(data) < block_size:
        raise ValueError(f"token stream of {len(data)} tokens is shorter than block_size={block_size}")
    starts = torch.randint(len(data) - block_size + 1, (batch_size,), generator=generator)
    return torch.stack([data[s:s + block_size] for s in starts.tolist()])


def batch_loss(model: TinyGPT, batch: torch.Tensor, objective: str, mask_token_id: Optional[int] = None,
               special_ids: Sequence[int] = (), generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Loss of ``model`` on a batch of windows for ``objective`` ``"causal"`` or ``"masked"``."""
    if objective == "causal":
        return causal_lm_loss(model(batch), batch)
    if objective == "masked":
        if mask_token_id is None:
            raise ValueError("the masked objective needs mask_token_id")
        inputs, labels = mask_tokens(batch, mask_token_id, model.config.vocab_size, special_ids,
                                     generator=generator)
        return masked_lm_loss(model(inputs, causal=False), labels)
    raise ValueError(f"objective must be 'causal' or 'masked', got {objective!r}")


@torch.no_grad()
def heldout_loss(model: TinyGPT, data: torch.Tensor, block_size: int, batch_size: int = 16,
                 max_windows: Optional[int] = None, objective: str = "causal",
                 mask_token_id: Optional[int] = None, special_ids: Sequence[int] = ()) -> float:
    """Mean loss over consecutive non-overlapping windows of ``data`` (deterministic; masking seeded)."""
    was_training = model.training
    model.eval()
    data = data.to(next(model.parameters()).device)
    windows = data[: len(data) // block_size * block_size].view(-1, block_size)[:max_windows]
    g = torch.Generator().manual_seed(1234)
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        batch = windows[i:i + batch_size]
        loss = batch_loss(model, batch, objective, mask_token_id, special_ids, generator=g)
        total, count = total + loss.item() * len(batch), count + len(batch)  # equal-size windows
    model.train(was_training)
    return total / max(count, 1)


def perplexity(model: TinyGPT, data: torch.Tensor, block_size: int, batch_size: int = 16) -> float:
    """Held-out perplexity exp(mean next-token loss) over non-overlapping windows of ``data``."""
    return perplexity_from_loss(heldout_loss(model, data, block_size, batch_size))


# --- the training loop ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines a pretraining run (tokenizer, model, optimisation, data)."""

    vocab_size: int = 512
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    dropout: float = 0.0
    steps: int = 30
    batch_size: int = 8
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 5
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 10
    eval_windows: int = 32
    seed: int = 0
    corpus: str = "ci"  # corpus size: a profile name (see instructlib.corpus.SIZES)
    threads: Optional[int] = CPU_THREADS  # torch's CPU threads while training (config.CPU_THREADS); None: as is

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        """The model's GPTConfig for a tokenizer of ``vocab_size`` tokens."""
        return GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout)


def pretrain_config(profile: Union[None, str, Profile] = None) -> PretrainConfig:
    """The course model's recipe for a profile: seconds in ci, a few minutes on 2 CPU cores in cpu."""
    p = as_profile(profile)
    if p.name == "ci":
        return PretrainConfig()
    if p.name == "cpu":
        # 2,400 steps (4.9 M tokens, about 5.5 epochs of the corpus; 6-8 min on 2 cores) rather than
        # 800: held-out perplexity 3.08 instead of 3.88, and a base from which chapter 05's recipe
        # learns the word tasks in 1,000 steps of 16 (count words 100 %, first and last word 88 %,
        # comma list 92 %, repeat word 99 % on new inputs) where the 800-step base reached 63 % in
        # 600 steps of 32 (measured when chapter 06's testbed was built).
        return PretrainConfig(vocab_size=2048, block_size=128, n_layer=4, n_head=4, n_embd=128,
                              steps=2400, batch_size=16, lr=4e-3, warmup_steps=240, eval_every=200,
                              eval_windows=128, corpus="cpu")
    return PretrainConfig(vocab_size=4096, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.1,
                          steps=5000, batch_size=64, lr=1e-3, warmup_steps=200, eval_every=250,
                          eval_windows=512, corpus="gpu")


def train(model: TinyGPT, data: torch.Tensor, config: PretrainConfig, objective: str = "causal",
          heldout: Optional[torch.Tensor] = None, mask_token_id: Optional[int] = None,
          special_ids: Sequence[int] = (), progress: bool = True):
    """Train ``model`` in place on random windows of the token stream ``data``; returns a ``History``.

    AdamW (weight decay on matrices), linear warmup then cosine decay, gradient clipping. The batch
    order and the masking are drawn from generators seeded with ``config.seed``: same run, same result
    (on CPU with ``config.threads`` threads, restored afterwards).
    """
    with cpu_threads(config.threads, next(model.parameters()).device):
        return _train(model, data, config, objective, heldout, mask_token_id, special_ids, progress)


def _train(model: TinyGPT, data: torch.Tensor, config: PretrainConfig, objective: str,
           heldout: Optional[torch.Tensor], mask_token_id: Optional[int], special_ids: Sequence[int],
           progress: bool):
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    torch.manual_seed(config.seed)
    g_data, g_mask = torch.Generator().manual_seed(config.seed), torch.Generator().manual_seed(config.seed + 1)
    opt = make_optimizer(model, lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95),
                         device=device)
    history = History()
    masked = dict(mask_token_id=mask_token_id, special_ids=special_ids)

    def evaluate(step: int) -> None:
        if heldout is not None:
            loss = heldout_loss(model, heldout, config.block_size, max_windows=config.eval_windows,
                                objective=objective, **masked)
            history.eval.append({"step": step, "val_loss": loss})

    model.train()
    evaluate(0)
    bar = tqdm(range(1, config.steps + 1), desc=f"pretraining ({objective} LM)", disable=not progress)
    for step in bar:
        lr = config.lr * warmup_cosine(step, config.warmup_steps, config.steps, config.min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = random_windows(data, config.batch_size, config.block_size, g_data).to(device)
        loss = batch_loss(model, batch, objective, generator=g_mask, **masked)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        history.train.append({"step": step, "loss": loss.item(), "lr": lr, "tokens": step * batch.numel()})
        if step % config.eval_every == 0 or step == config.steps:
            evaluate(step)
            if history.eval:
                bar.set_postfix(loss=f"{loss.item():.3f}", heldout=f"{history.eval[-1]['val_loss']:.3f}")
    model.eval()
    return history
