"""Training recipes, from seconds on synthetic data to the paper's full run.

Every fidelity uses the same validation split (20% of the training set, fixed seed),
so a demo score and a paper score of one individual are measured on nested data.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Fidelity:
    name: str
    epochs: int  # upper bound; the plateau schedule may stop earlier
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: float
    schedule: str  # "cosine": fixed budget; "plateau": the paper's ReduceLROnPlateau
    synthetic: bool = False  # smoke: generate data in-process, ignore --data
    image_size: int | None = None  # None keeps the stored size; paper upsamples to 224
    train_per_class: int | None = None  # None: the whole 80% training part
    val_per_class: int | None = None  # None: the whole 20% validation part
    plateau_factor: float = 0.7
    plateau_patience: int = 4
    min_lr: float = 1e-3  # plateau schedule stops once the learning rate falls below this
    flip: bool = True
    translate: float = 0.1  # largest shift, as a fraction of the side
    jitter: float = 0.1  # brightness, contrast and saturation spread
    eval_batch_size: int = 500


FIDELITIES = {
    # seconds on a laptop: proves the pipeline runs; accuracy means little
    "smoke": Fidelity(name="smoke", epochs=3, batch_size=32, lr=0.05, weight_decay=1e-4,
                      warmup_epochs=0.5, schedule="cosine", synthetic=True),
    # 2.5-3.5 minutes on 2 CPU cores: half the training part (20,000 images) at native
    # 32x32, scored on the full 10,000-image validation split. On the JPEG copy the seed
    # reaches ~68%; 1,000 per class x 12 epochs gave 61% in half the time, 2,000 x 12
    # gave 66%: past this point extra epochs buy less than a point a minute
    "demo": Fidelity(name="demo", epochs=15, batch_size=128, lr=0.1, weight_decay=5e-4,
                     warmup_epochs=1.0, schedule="cosine", train_per_class=2000),
    # a GPU minute or a patient CPU hour: all training images, still 32x32
    "proxy": Fidelity(name="proxy", epochs=30, batch_size=128, lr=0.1, weight_decay=5e-4,
                      warmup_epochs=1.0, schedule="cosine"),
    # the original recipe: 224x224 bilinear upsampling, SGD 0.1 nesterov, wd 1e-4, plateau
    # decay on the training loss until lr < 0.001 (the GE paper's copy used batch 192)
    "paper": Fidelity(name="paper", epochs=400, batch_size=64, lr=0.1, weight_decay=1e-4,
                      warmup_epochs=1.0, schedule="plateau", image_size=224),
}


# a cascade's screening rung (`--budget screen`): any fidelity at an eighth of its
# training (a quarter of the epochs on half the training images), scored on 200
# validation images per class
BUDGETS = ("full", "screen")
SCREEN_EPOCHS, SCREEN_IMAGES, SCREEN_VAL_PER_CLASS = 0.25, 0.5, 200
FULL_TRAIN_PER_CLASS = 4000  # the whole 80% training part of CIFAR-10, per class


class FidelityError(ValueError):
    """An unknown fidelity or a bad override; the message is one line."""


def resolve(name: str, budget: str = "full", **overrides: object) -> Fidelity:
    """The named recipe, cut to a screen's budget if asked, with any non-None override
    applied."""
    if name not in FIDELITIES:
        raise FidelityError(f"unknown fidelity {name!r}; choose one of {', '.join(FIDELITIES)}")
    known = {f.name for f in fields(Fidelity)}
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise FidelityError(f"unknown fidelity setting(s): {', '.join(unknown)}")
    if budget not in BUDGETS:
        raise FidelityError(f"unknown budget {budget!r}; choose one of {', '.join(BUDGETS)}")
    base = FIDELITIES[name] if budget == "full" else screen(FIDELITIES[name])
    fidelity = replace(base, **changes)
    if fidelity.epochs < 1 or fidelity.batch_size < 1:
        raise FidelityError("epochs and batch size must be at least 1")
    return fidelity


def screen(recipe: Fidelity) -> Fidelity:
    """`recipe` at a screening rung's budget (synthetic data stays as it is)."""
    if recipe.synthetic:
        return replace(recipe, epochs=max(1, round(recipe.epochs * SCREEN_EPOCHS)))
    per_class = recipe.train_per_class or FULL_TRAIN_PER_CLASS
    return replace(recipe, epochs=max(1, round(recipe.epochs * SCREEN_EPOCHS)),
                   warmup_epochs=min(recipe.warmup_epochs, 0.5),
                   train_per_class=max(1, int(per_class * SCREEN_IMAGES)),
                   val_per_class=min(recipe.val_per_class or SCREEN_VAL_PER_CLASS,
                                     SCREEN_VAL_PER_CLASS))
