"""The recipe of one MABN training run (joint source training, then meta-auxiliary training);
stored in the checkpoint so that `edgedet adapt` repeats the inner step it was trained for."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class MabnConfig:
    model: str = "resnet-bn"
    aux: str = "rotation"  # rotation | byol
    img_size: int = 32
    seed: int = 0
    train_per_domain: int = 600  # labelled images per source domain
    # Stage 1: joint training of classifier + auxiliary head on all source domains mixed.
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    aux_weight: float = 0.1  # λ in L = L_main + λ·L_aux (both stages)
    # Stage 2: meta-auxiliary training of the norm affine params, one source domain per episode.
    episodes: int = 300
    # Episode domains: each a source domain plus one random mild shift within the source
    # ranges (`domains.random_source_domain`), `meta_domain_images` images each; 0 = the
    # fixed source domains themselves (on which the jointly trained model needs no adapting).
    meta_domains: int = 24
    meta_domain_images: int = 160
    support: tuple[int, int] = (12, 32)  # unlabelled support-set size, drawn per episode
    query: int = 64  # labelled query set of the same domain, disjoint from the support
    inner_lr: float = 0.1  # α: SGD rate of the inner (and the test-time) step
    inner_steps: int = 1
    outer_lr: float = 1e-3  # β: Adam rate of the outer step
    second_order: bool = True  # differentiate through the inner step (False: first-order MAML)
    meta_aux_head: bool = True  # the outer step also learns the auxiliary head's weights
    # BatchNorm statistics of the inner step, its query and test-time inference: "source" (the
    # frozen source running statistics, as the paper) or "support" (re-estimated on the
    # unlabelled support / adaptation images, then the affine step on top).
    stats: str = "source"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["support"] = list(self.support)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MabnConfig:
        names = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in d.items() if k in names})
        out.support = tuple(out.support)
        return out
